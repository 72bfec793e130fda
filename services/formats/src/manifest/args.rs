//! Splitting a manifest line: finding the `--` that starts the argument list, and turning that
//! list into owned arguments with the quoting rules described in the [`super`] module docs.

use alloc::string::String;
use alloc::vec::Vec;

/// Splits `line` at its first whitespace-separated `--` token: the text before it, and the text
/// after it if there is one. Whitespace is ASCII whitespace, as everywhere in the manifest.
pub(super) fn split_at_dashes(line: &str) -> (&str, Option<&str>) {
    let mut offset = 0;
    for piece in line.split(|c: char| c.is_ascii_whitespace()) {
        if piece == "--" {
            let before = line.get(..offset).unwrap_or(line);
            let after = offset.checked_add(2).and_then(|end| line.get(end..));
            return (before, after.or(Some("")));
        }
        // Every separator is one ASCII byte.
        offset = offset.saturating_add(piece.len()).saturating_add(1);
    }
    (line, None)
}

/// The arguments in `text`: split on ASCII whitespace, except inside double quotes; `\"` and
/// `\\` stand for `"` and `\` inside or outside quotes, and any other backslash is an error.
/// A quoted empty string (`""`) is one empty argument.
pub(super) fn split_args(text: &str) -> Result<Vec<String>, &'static str> {
    let mut args = Vec::new();
    // `Some` while inside an argument (even an empty quoted one).
    let mut current: Option<String> = None;
    let mut in_quotes = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                current.get_or_insert_with(String::new);
            }
            '\\' => match chars.next() {
                Some(escaped @ ('"' | '\\')) => {
                    current.get_or_insert_with(String::new).push(escaped)
                }
                _ => return Err("bad escape in arguments: only \\\" and \\\\ are allowed"),
            },
            c if c.is_ascii_whitespace() && !in_quotes => args.extend(current.take()),
            c => current.get_or_insert_with(String::new).push(c),
        }
    }
    if in_quotes {
        return Err("unterminated double quote in arguments");
    }
    args.extend(current);
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn dashes_split_only_as_a_whole_token() {
        assert_eq!(split_at_dashes("a b -- c d"), ("a b ", Some(" c d")));
        assert_eq!(split_at_dashes("a --x b"), ("a --x b", None));
        assert_eq!(split_at_dashes("a\t--"), ("a\t", Some("")));
        assert_eq!(split_at_dashes("a -- b -- c"), ("a ", Some(" b -- c")));
    }

    #[test]
    fn quotes_group_words_and_escapes_are_literal() {
        assert_eq!(
            split_args(r#" one "two three"  f"ou"r "" \"x\\ "#),
            Ok(vec![
                "one".into(),
                "two three".into(),
                "four".into(),
                "".into(),
                "\"x\\".into()
            ])
        );
    }

    #[test]
    fn unterminated_quote_and_unknown_escape_are_errors() {
        assert!(split_args(r#"a "b"#).is_err());
        assert!(split_args(r"a\n").is_err());
        assert!(split_args("a\\").is_err());
    }
}
