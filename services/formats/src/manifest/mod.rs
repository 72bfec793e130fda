//! The boot manifest: the text file in the initrd (its path is the caller's business) that tells
//! init which services to start, and how.
//!
//! Format, one service per line:
//!
//! ```text
//! # comment
//! service <name> <path> [key=value ...] [-- arg1 arg2 ...]
//! ```
//!
//! - Blank lines, and lines whose first non-blank character is `#`, are ignored. There are no
//!   trailing comments: a `#` later in a line is ordinary text. Whitespace is ASCII whitespace;
//!   `\r\n` line ends are accepted.
//! - `name` is 1 to 31 characters of `[a-z0-9_-]`, unique in the file.
//! - `path` is the program's absolute path (it starts with `/`).
//! - Keys, each at most once: `restart=always|on-failure|never` (default `on-failure`),
//!   `priority=<0..=63>` (default 32), `cpu=<n>` (pin to one CPU; default: any),
//!   `after=<name>` (start after that service has registered; recorded, not checked here, except
//!   that a service cannot name itself). Numbers are plain decimal digits.
//! - Everything after a standalone `--` is the argument list, split on whitespace. Double quotes
//!   group words into one argument (`"a b"` is one argument, `""` an empty one) and may sit
//!   inside a word (`x"y z"` is `xy z`); the only escapes are `\"` and `\\`, inside or outside
//!   quotes; any other backslash is an error.
//!
//! This module owns only the syntax: it turns text into [`ServiceSpec`]s or a [`ManifestError`]
//! naming the 1-based line and what is wrong, never panics, and borrows names and paths from the
//! text (arguments are owned, since unquoting changes them).

mod args;

use alloc::collections::BTreeSet;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Priority of a service that does not say.
pub const DEFAULT_PRIORITY: u8 = 32;
/// The highest priority a service may ask for.
pub const MAX_PRIORITY: u8 = 63;
/// The longest service name.
pub const MAX_NAME_LEN: usize = 31;

/// What init does when a service exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Restart {
    /// Restart it whatever the exit status.
    Always,
    /// Restart it only if it failed (the default).
    #[default]
    OnFailure,
    /// Leave it stopped.
    Never,
}

/// One `service` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec<'a> {
    /// Unique name, `[a-z0-9_-]{1,31}`.
    pub name: &'a str,
    /// Absolute path of the program.
    pub path: &'a str,
    /// Restart policy.
    pub restart: Restart,
    /// Scheduling priority, `0..=63`.
    pub priority: u8,
    /// The one CPU to run on, if pinned.
    pub cpu: Option<u32>,
    /// The service to start after, if any.
    pub after: Option<&'a str>,
    /// Arguments after `--`, unquoted.
    pub args: Vec<String>,
}

/// Why a manifest was rejected: the 1-based line and the broken rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong, as a short phrase.
    pub reason: &'static str,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// Parses a whole manifest into its services, in file order.
pub fn parse(text: &str) -> Result<Vec<ServiceSpec<'_>>, ManifestError> {
    let mut services = Vec::new();
    let mut names = BTreeSet::new();
    for (number, line) in (1..).zip(text.lines()) {
        let content = line.trim_start_matches(|c: char| c.is_ascii_whitespace());
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let error = |reason| ManifestError {
            line: number,
            reason,
        };
        let spec = parse_service(content).map_err(error)?;
        if !names.insert(spec.name) {
            return Err(error("service name already used on an earlier line"));
        }
        services.push(spec);
    }
    Ok(services)
}

/// Parses one non-blank, non-comment line.
fn parse_service(line: &str) -> Result<ServiceSpec<'_>, &'static str> {
    let (head, tail) = args::split_at_dashes(line);
    let mut words = head.split_ascii_whitespace();
    if words.next() != Some("service") {
        return Err("unknown directive (expected `service`)");
    }
    let name = words.next().ok_or("missing service name")?;
    if !is_valid_name(name) {
        return Err("service name must be 1 to 31 characters of [a-z0-9_-]");
    }
    let path = words.next().ok_or("missing program path")?;
    if !path.starts_with('/') {
        return Err("program path must be absolute (start with /)");
    }

    let mut restart = None;
    let mut priority = None;
    let mut cpu = None;
    let mut after = None;
    for word in words {
        let (key, value) = word
            .split_once('=')
            .ok_or("expected key=value or `--` after the path")?;
        match key {
            "restart" => set_once(&mut restart, parse_restart(value)?)?,
            "priority" => set_once(&mut priority, parse_priority(value)?)?,
            "cpu" => set_once(
                &mut cpu,
                parse_decimal(value).ok_or("cpu must be a decimal CPU number")?,
            )?,
            "after" => set_once(&mut after, parse_after(value, name)?)?,
            _ => return Err("unknown key (expected restart, priority, cpu or after)"),
        }
    }
    let args = match tail {
        Some(tail) => args::split_args(tail)?,
        None => Vec::new(),
    };
    Ok(ServiceSpec {
        name,
        path,
        restart: restart.unwrap_or_default(),
        priority: priority.unwrap_or(DEFAULT_PRIORITY),
        cpu,
        after,
        args,
    })
}

/// Stores `value` in `slot`, refusing a key given twice.
fn set_once<T>(slot: &mut Option<T>, value: T) -> Result<(), &'static str> {
    if slot.is_some() {
        return Err("key given twice");
    }
    *slot = Some(value);
    Ok(())
}

fn parse_priority(value: &str) -> Result<u8, &'static str> {
    parse_decimal(value)
        .and_then(|p| u8::try_from(p).ok())
        .filter(|&p| p <= MAX_PRIORITY)
        .ok_or("priority must be a number from 0 to 63")
}

fn parse_after<'a>(value: &'a str, name: &str) -> Result<&'a str, &'static str> {
    if !is_valid_name(value) {
        return Err("after must name a service ([a-z0-9_-], 1 to 31 characters)");
    }
    if value == name {
        return Err("a service cannot start after itself");
    }
    Ok(value)
}

fn parse_restart(value: &str) -> Result<Restart, &'static str> {
    match value {
        "always" => Ok(Restart::Always),
        "on-failure" => Ok(Restart::OnFailure),
        "never" => Ok(Restart::Never),
        _ => Err("restart must be always, on-failure or never"),
    }
}

/// A non-empty string of ASCII digits as a `u32` (no sign, no overflow).
fn parse_decimal(value: &str) -> Option<u32> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// `[a-z0-9_-]{1,31}`.
fn is_valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}
