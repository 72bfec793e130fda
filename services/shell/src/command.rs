//! Command lines: split into words and decoded into a [`Command`] or a one-line usage error.
//! Nothing here runs anything.
//!
//! Words are separated by spaces or tabs; `'...'` and `"..."` group words with spaces in them
//! (no escapes inside; an unterminated quote is an error).

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// A decoded command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// A blank line.
    Empty,
    Help,
    Echo(Vec<String>),
    Ps,
    Kill(u64),
    /// `run <program> [args...]`: `path` is `/bin/<program>` unless the program is a path.
    /// `cgroup`: the group (resmgr path) the program starts in; None for the shell's own.
    /// `run [--cgroup PATH] [--ns pid] PROGRAM ARGS`: `new_pid_ns` starts it as pid 1 of a new
    /// pid namespace.
    Run { program: String, path: String, args: Vec<String>, cgroup: Option<String>, new_pid_ns: bool },
    Mem,
    Uptime,
    PowerOff,
    /// `vm <subcommand> [args...]`: handed to the VM monitor, which parses it.
    Vm(Vec<String>),
    /// `net <subcommand> [args...]`: handed to the switch service, which parses it.
    Net(Vec<String>),
    /// `cgroup <subcommand> [args...]`: handed to resmgr, which parses it.
    Cgroup(Vec<String>),
    /// A file command (`ls`, `cat`, `cp` ... see `files`), which parses its own arguments.
    File { name: String, args: Vec<String> },
    /// `<command> > path` or `>> path` (append): the command's output goes to the file.
    Redirect { cmd: alloc::boxed::Box<Command>, path: String, append: bool },
}

/// The commands, with their usage and what they do (`help` prints these).
pub const COMMANDS: &[(&str, &str)] = &[
    ("help", "list the commands"),
    ("echo <words...>", "print the words"),
    ("ps", "list the processes (with each one's cgroup)"),
    ("kill <pid>", "kill a process"),
    ("run [--cgroup PATH] [--ns pid] <program> [args...]", "run /bin/<program> in the foreground (Ctrl-C kills it), in a cgroup, as pid 1 of a new pid namespace"),
    ("mem", "physical memory (total, used, free), the kernel heap and its objects"),
    ("uptime", "time since boot"),
    ("poweroff", "power the machine off"),
    ("vm run <name|config> [opts]", "start a VM (--vcpus N --mem M --cpu C --disk F[:ro] --net SWITCH --console virtio --rng --cgroup PATH --attach|--wait|--timeout S --append S --kernel F [--raw --load A] --initrd F)"),
    ("vm list | stat <id>", "list VMs and their state; exit counts of a VM"),
    ("vm console <id> | stop <id>", "show a VM's console; stop a VM"),
    ("vm rm <id> | start <id> [opts]", "forget a VM that has stopped; boot a stopped VM again (--attach|--wait|--timeout S)"),
    ("net list | stat [switch]", "the virtual switches' ports and counters; a switch's learned addresses"),
    ("cgroup ls|mkdir|rmdir PATH", "cgroups: list a group's files and children, make or remove one (/jobs, /jobs/a)"),
    ("cgroup cat|set PATH FILE [V]", "read or set memory.max, pids.max, cpu.max, cpu.weight (max, 64M, 50, '20000 100000', 300); memory.current, cpu.stat ..."),
    ("cgroup stat", "every group with its memory, processes, OOM kills and CPU time"),
    ("cgroup move PATH PID", "move a running process into a group (its processes, threads and page tables go with it)"),
];

/// Why a line could not be decoded. Displayed as the one line the shell prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The first word names no command.
    Unknown(String),
    /// Wrong number of arguments: the command's name and its usage.
    Usage(&'static str, &'static str),
    /// `kill` was given something that is not a pid.
    NotAPid(String),
    UnterminatedQuote,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Self::Unknown(cmd) => write!(f, "{cmd}: unknown command (try help)"),
            Self::Usage(cmd, usage) => write!(f, "{cmd}: usage: {usage}"),
            Self::NotAPid(word) => write!(f, "kill: {word} is not a pid"),
            Self::UnterminatedQuote => f.write_str("shell: unterminated quote"),
        }
    }
}

/// Splits a line into words.
pub fn split_words(line: &str) -> Result<Vec<String>, ParseError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, ' ' | '\t') => {
                if in_word {
                    words.push(core::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(ParseError::UnterminatedQuote);
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// A pid: a positive decimal number.
fn parse_pid(word: &str) -> Result<u64, ParseError> {
    match word.parse::<u64>() {
        Ok(pid) if pid > 0 && word.bytes().all(|b| b.is_ascii_digit()) => Ok(pid),
        _ => Err(ParseError::NotAPid(word.to_string())),
    }
}

/// The path `run` starts: a path as given, a bare name under /bin.
fn program_path(program: &str) -> String {
    if program.starts_with('/') { program.to_string() } else { alloc::format!("/bin/{program}") }
}

/// Decodes one command line.
pub fn parse(line: &str) -> Result<Command, ParseError> {
    let words = split_words(line)?;
    match words.iter().position(|w| w == ">" || w == ">>") {
        Some(at) if at > 0 && at + 2 == words.len() => Ok(Command::Redirect {
            cmd: alloc::boxed::Box::new(parse_words(&words[..at])?),
            path: words[at + 1].clone(),
            append: words[at] == ">>",
        }),
        Some(_) => Err(ParseError::Usage("redirect", "<command> > file | >> file")),
        None => parse_words(&words),
    }
}

fn parse_words(words: &[String]) -> Result<Command, ParseError> {
    let Some((name, args)) = words.split_first() else { return Ok(Command::Empty) };
    let no_args = |cmd: Command, usage: &'static str| if args.is_empty() { Ok(cmd) } else { Err(ParseError::Usage(usage, usage)) };
    match name.as_str() {
        "help" => no_args(Command::Help, "help"),
        "echo" => Ok(Command::Echo(args.to_vec())),
        "ps" => no_args(Command::Ps, "ps"),
        "kill" => match args {
            [pid] => Ok(Command::Kill(parse_pid(pid)?)),
            _ => Err(ParseError::Usage("kill", "kill <pid>")),
        },
        "run" => {
            const USAGE: &str = "run [--cgroup PATH] [--ns pid] <program> [args...]";
            let (mut cgroup, mut new_pid_ns, mut args) = (None, false, args);
            loop {
                match args {
                    [flag, group, rest @ ..] if flag == "--cgroup" && cgroup.is_none() => {
                        cgroup = Some(group.clone());
                        args = rest;
                    }
                    [flag, kinds, rest @ ..] if flag == "--ns" && !new_pid_ns => {
                        // Keel has pid namespaces; mount, name and uts ones are not there yet.
                        if kinds != "pid" {
                            return Err(ParseError::Usage("run", "run --ns pid: the only namespace Keel makes is pid"));
                        }
                        new_pid_ns = true;
                        args = rest;
                    }
                    [flag, ..] if flag == "--cgroup" || flag == "--ns" => return Err(ParseError::Usage("run", USAGE)),
                    _ => break,
                }
            }
            match args.split_first() {
                Some((program, rest)) if !program.is_empty() => {
                    Ok(Command::Run { program: program.clone(), path: program_path(program), args: rest.to_vec(), cgroup, new_pid_ns })
                }
                _ => Err(ParseError::Usage("run", USAGE)),
            }
        }
        "mem" => no_args(Command::Mem, "mem"),
        "uptime" => no_args(Command::Uptime, "uptime"),
        "poweroff" => no_args(Command::PowerOff, "poweroff"),
        "vm" if !args.is_empty() => Ok(Command::Vm(args.to_vec())),
        "vm" => Err(ParseError::Usage("vm", "vm run|start|list|stat|console|stop|rm ...")),
        "net" => Ok(Command::Net(args.to_vec())),
        "cgroup" if !args.is_empty() => Ok(Command::Cgroup(args.to_vec())),
        "cgroup" => Err(ParseError::Usage("cgroup", "cgroup ls|mkdir|rmdir|cat|set|stat ...")),
        name if crate::files::is_file_command(name) => Ok(Command::File { name: name.to_string(), args: args.to_vec() }),
        other => Err(ParseError::Unknown(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn blank_lines_are_empty_commands() {
        assert_eq!(parse(""), Ok(Command::Empty));
        assert_eq!(parse("  \t "), Ok(Command::Empty));
    }

    #[test]
    fn words_split_on_runs_of_spaces_and_tabs() {
        assert_eq!(split_words("  echo \t a   b "), Ok(words(&["echo", "a", "b"])));
    }

    #[test]
    fn quotes_group_words_and_may_be_empty() {
        assert_eq!(split_words(r#"echo "a  b" 'c "d"' x""y ''"#), Ok(words(&["echo", "a  b", "c \"d\"", "xy", ""])));
    }

    #[test]
    fn an_unterminated_quote_is_an_error() {
        assert_eq!(parse("echo \"abc"), Err(ParseError::UnterminatedQuote));
        assert_eq!(ParseError::UnterminatedQuote.to_string(), "shell: unterminated quote");
    }

    #[test]
    fn simple_commands_decode_and_refuse_arguments() {
        assert_eq!(parse("help"), Ok(Command::Help));
        assert_eq!(parse("ps"), Ok(Command::Ps));
        assert_eq!(parse("mem"), Ok(Command::Mem));
        assert_eq!(parse("uptime"), Ok(Command::Uptime));
        assert_eq!(parse(" poweroff "), Ok(Command::PowerOff));
        assert_eq!(parse("ps -a").unwrap_err().to_string(), "ps: usage: ps");
    }

    #[test]
    fn echo_keeps_its_words() {
        assert_eq!(parse("echo hello   world"), Ok(Command::Echo(words(&["hello", "world"]))));
        assert_eq!(parse("echo"), Ok(Command::Echo(Vec::new())));
    }

    #[test]
    fn kill_takes_exactly_one_positive_decimal_pid() {
        assert_eq!(parse("kill 12"), Ok(Command::Kill(12)));
        assert_eq!(parse("kill").unwrap_err().to_string(), "kill: usage: kill <pid>");
        assert_eq!(parse("kill 1 2").unwrap_err().to_string(), "kill: usage: kill <pid>");
        assert_eq!(parse("kill abc").unwrap_err().to_string(), "kill: abc is not a pid");
        assert_eq!(parse("kill 0").unwrap_err().to_string(), "kill: 0 is not a pid");
        assert_eq!(parse("kill +3").unwrap_err().to_string(), "kill: +3 is not a pid");
        assert_eq!(parse("kill 99999999999999999999").unwrap_err().to_string(), "kill: 99999999999999999999 is not a pid");
    }

    #[test]
    fn run_looks_in_bin_unless_given_a_path() {
        assert_eq!(
            parse("run ktest crash now"),
            Ok(Command::Run { program: "ktest".into(), path: "/bin/ktest".into(), args: words(&["crash", "now"]), cgroup: None, new_pid_ns: false })
        );
        assert_eq!(parse("run /sbin/x"), Ok(Command::Run { program: "/sbin/x".into(), path: "/sbin/x".into(), args: Vec::new(), cgroup: None, new_pid_ns: false }));
        assert_eq!(
            parse("run --cgroup /jobs x 1"),
            Ok(Command::Run { program: "x".into(), path: "/bin/x".into(), args: words(&["1"]), cgroup: Some("/jobs".into()), new_pid_ns: false })
        );
        assert!(matches!(parse("run --cgroup"), Err(ParseError::Usage("run", _))));
        assert!(matches!(parse("run --cgroup /jobs"), Err(ParseError::Usage("run", _))));
        assert_eq!(
            parse("run --ns pid --cgroup /jobs shell"),
            Ok(Command::Run { program: "shell".into(), path: "/bin/shell".into(), args: Vec::new(), cgroup: Some("/jobs".into()), new_pid_ns: true })
        );
        assert!(matches!(parse("run --ns mount x"), Err(ParseError::Usage("run", _))));
        assert!(matches!(parse("run --ns pid --ns pid x"), Err(ParseError::Usage("run", _))));
        assert!(matches!(parse("run --ns"), Err(ParseError::Usage("run", _))));
        assert_eq!(parse("cgroup mkdir /a"), Ok(Command::Cgroup(words(&["mkdir", "/a"]))));
        assert!(matches!(parse("cgroup"), Err(ParseError::Usage("cgroup", _))));
        assert_eq!(parse("run").unwrap_err().to_string(), "run: usage: run [--cgroup PATH] [--ns pid] <program> [args...]");
        assert_eq!(parse("run ''").unwrap_err().to_string(), "run: usage: run [--cgroup PATH] [--ns pid] <program> [args...]");
    }

    #[test]
    fn output_goes_to_a_file_with_one_redirection_at_the_end() {
        assert_eq!(
            parse("echo a b >> /f"),
            Ok(Command::Redirect { cmd: alloc::boxed::Box::new(Command::Echo(words(&["a", "b"]))), path: "/f".into(), append: true })
        );
        assert_eq!(parse("ls -l > out").map(|c| matches!(c, Command::Redirect { append: false, .. })), Ok(true));
        assert_eq!(parse("echo > ").unwrap_err().to_string(), "redirect: usage: <command> > file | >> file");
        assert_eq!(parse("> f").unwrap_err().to_string(), "redirect: usage: <command> > file | >> file");
        assert_eq!(parse("echo a > f b").unwrap_err().to_string(), "redirect: usage: <command> > file | >> file");
        assert_eq!(parse("cat /x"), Ok(Command::File { name: "cat".into(), args: words(&["/x"]) }));
    }

    #[test]
    fn unknown_commands_suggest_help() {
        assert_eq!(parse("frobnicate x").unwrap_err().to_string(), "frobnicate: unknown command (try help)");
    }
}
