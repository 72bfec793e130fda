//! Inputs the cargo-fuzz targets (fuzz/, scripts/fuzz.sh) found, kept as plain tests so they run
//! on every `cargo test`. Each names the target and what was wrong.

use keel_formats::startup::Startup;

/// fuzz target `startup`: `keel-startup 1\narg x\r` parsed to the argument `x\r`, which
/// rendered as `arg x\r\n`, which parsed back as `x` (`str::lines` eats a `\r` before `\n`).
/// An argument ending in a carriage return changed on its way through a startup block.
#[test]
fn an_argument_ending_in_carriage_return_survives_render_and_parse() {
    let s = Startup::parse("keel-startup 1\narg x\r").unwrap();
    assert_eq!(s.args, ["x\r"]);
    assert_eq!(Startup::parse(&s.render()), Ok(s));

    let spawned = Startup { args: vec!["/bin/p".into(), "a\r".into(), "\r".into()], caps: vec![("c\r".into(), 4)] };
    assert_eq!(Startup::parse(&spawned.render()), Ok(spawned));
}
