//! Behaviour of the boot-manifest parser: a realistic manifest becomes the right service specs,
//! and every malformed line is reported with its 1-based line number and reason.

use keel_formats::FormatError;
use keel_formats::manifest::{ManifestError, Restart, ServiceSpec, parse};

const REALISTIC: &str = r#"# Keel boot manifest: services init starts, in order.

service console /bin/console restart=always priority=10 cpu=0
service blk /bin/virtio-blk priority=20 after=console -- --queue-depth 64
  # indented comment
service fs /bin/fs after=blk -- --root /dev/vda "--label=Keel root" ""
service shell /bin/shell restart=never -- -c "echo \"hi\" \\ there"
service net_0 /bin/net
"#;

fn spec<'a>(name: &'a str, path: &'a str) -> ServiceSpec<'a> {
    ServiceSpec {
        name,
        path,
        restart: Restart::OnFailure,
        priority: 32,
        cpu: None,
        after: None,
        args: Vec::new(),
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn realistic_manifest_parses_into_the_right_specs() {
    let specs = parse(REALISTIC).expect("the realistic manifest is valid");
    assert_eq!(
        specs,
        vec![
            ServiceSpec {
                restart: Restart::Always,
                priority: 10,
                cpu: Some(0),
                ..spec("console", "/bin/console")
            },
            ServiceSpec {
                priority: 20,
                after: Some("console"),
                args: strings(&["--queue-depth", "64"]),
                ..spec("blk", "/bin/virtio-blk")
            },
            ServiceSpec {
                after: Some("blk"),
                args: strings(&["--root", "/dev/vda", "--label=Keel root", ""]),
                ..spec("fs", "/bin/fs")
            },
            ServiceSpec {
                restart: Restart::Never,
                args: strings(&["-c", "echo \"hi\" \\ there"]),
                ..spec("shell", "/bin/shell")
            },
            spec("net_0", "/bin/net"),
        ]
    );
}

#[test]
fn empty_and_comment_only_manifests_have_no_services() {
    assert_eq!(parse(""), Ok(vec![]));
    assert_eq!(parse("\n  \n# nothing\n\t# still nothing\n"), Ok(vec![]));
}

#[test]
fn omitted_keys_take_their_defaults() {
    let specs = parse("service a /a").unwrap();
    assert_eq!(specs, vec![spec("a", "/a")]);
    assert_eq!(specs[0].restart, Restart::OnFailure);
    assert_eq!(specs[0].priority, 32);
}

#[test]
fn crlf_line_ends_and_extra_whitespace_are_accepted() {
    let specs = parse("service a  /a\t priority=0 \r\nservice b /b priority=63\r\n").unwrap();
    assert_eq!(specs[0].priority, 0);
    assert_eq!(specs[1].priority, 63);
}

#[test]
fn a_bare_double_dash_gives_no_arguments_and_later_dashes_are_arguments() {
    let specs = parse("service a /a --\nservice b /b -- x -- y").unwrap();
    assert!(specs[0].args.is_empty());
    assert_eq!(specs[1].args, strings(&["x", "--", "y"]));
}

#[test]
fn hash_after_the_start_of_a_line_is_ordinary_text() {
    let specs = parse("service a /a -- #not-a-comment").unwrap();
    assert_eq!(specs[0].args, strings(&["#not-a-comment"]));
}

#[test]
fn each_malformed_line_is_reported_with_its_line_number_and_reason() {
    // (manifest, 1-based line, a word the reason must contain)
    let cases: &[(&str, usize, &str)] = &[
        ("start a /a", 1, "directive"),
        ("# ok\nservice", 2, "missing service name"),
        ("service a", 1, "missing program path"),
        ("service a --", 1, "missing program path"),
        ("service Bad /a", 1, "name"),
        ("service a.b /a", 1, "name"),
        ("service abcdefghijklmnopqrstuvwxyz012345 /a", 1, "name"),
        ("service a bin/a", 1, "absolute"),
        ("service a /a restart", 1, "key=value"),
        ("service a /a color=red", 1, "unknown key"),
        ("service a /a restart=sometimes", 1, "restart"),
        ("service a /a priority=64", 1, "priority"),
        ("service a /a priority=-1", 1, "priority"),
        ("service a /a priority=+1", 1, "priority"),
        ("service a /a priority=", 1, "priority"),
        ("service a /a priority=99999999999", 1, "priority"),
        ("service a /a cpu=one", 1, "cpu"),
        ("service a /a cpu=4294967296", 1, "cpu"),
        ("service a /a after=", 1, "after"),
        ("service a /a after=B", 1, "after"),
        ("service a /a after=a", 1, "itself"),
        ("service a /a priority=1 priority=2", 1, "twice"),
        ("service a /a cpu=1 cpu=1", 1, "twice"),
        ("\n\nservice a /a -- \"open", 3, "quote"),
        ("service a /a -- bad\\escape", 1, "escape"),
        ("service a /a\n# c\n\nservice a /b", 4, "already used"),
    ];
    for &(text, line, word) in cases {
        let error = parse(text).expect_err(text);
        assert_eq!(error.line, line, "{text:?}: {error}");
        assert!(
            error.reason.contains(word),
            "{text:?}: reason {:?} should mention {word:?}",
            error.reason
        );
    }
}

#[test]
fn the_first_bad_line_is_the_one_reported() {
    let text = "service a /a\nservice b /b priority=70\nservice c c";
    assert_eq!(parse(text).unwrap_err().line, 2);
}

#[test]
fn error_displays_as_line_number_and_reason() {
    let error = parse("service a /a\nservice a /a").unwrap_err();
    assert_eq!(
        error.to_string(),
        "line 2: service name already used on an earlier line"
    );
    let folded: FormatError = error.into();
    assert_eq!(
        folded.to_string(),
        "manifest: line 2: service name already used on an earlier line"
    );
    assert_eq!(
        folded,
        FormatError::Manifest(ManifestError {
            line: 2,
            reason: "service name already used on an earlier line"
        })
    );
}

#[test]
fn arbitrary_text_never_panics() {
    let mut rng = 0x6d61_6e69u64;
    let alphabet: &[u8] = b"service /ab=-\"\\ \n#\t0123456789restartpriocpuafter\r\xc3\xa9";
    for _ in 0..5000 {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = (rng >> 40) as usize % 80;
        let bytes: Vec<u8> = (0..len)
            .map(|i| {
                let r = rng.rotate_left(i as u32 * 7) ^ (i as u64).wrapping_mul(0x9e37_79b9);
                alphabet[(r >> 11) as usize % alphabet.len()]
            })
            .collect();
        let text = String::from_utf8_lossy(&bytes);
        if let Err(error) = parse(&text) {
            assert!(error.line >= 1 && error.line <= text.lines().count());
        }
    }
}
