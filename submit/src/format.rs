//! `vstat --format`: one line per job in a layout the caller gives, as `squeue --format` does,
//! for scripts and workflow tools that read fixed columns.
//!
//! A field is `%[.][WIDTH]TYPE`: padded to WIDTH on the right, or on the left with `.`.
//! Types: `i` id (`12` or `12[3]`), `j` name, `u` user, `q` or `P` queue, `t` state letter,
//! `T` state word, `M` running time, `l` walltime, `D` VMs, `N` nodes, `R` reason, `p`
//! priority, `e` exit code; `%%` is a `%`.

use vjob_api::JobInfo;

use crate::rows::Row;
use crate::table::hms;

/// One piece of a layout.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Field { kind: char, width: usize, right: bool },
}

/// A parsed `--format` layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout(Vec<Piece>);

const KINDS: &str = "ijuqPtTMlDNRpe";

impl Layout {
    pub fn parse(text: &str) -> Result<Layout, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                literal.push(c);
                continue;
            }
            if chars.peek() == Some(&'%') {
                chars.next();
                literal.push('%');
                continue;
            }
            let right = chars.next_if_eq(&'.').is_some();
            let mut width = String::new();
            while let Some(d) = chars.next_if(char::is_ascii_digit) {
                width.push(d);
            }
            let kind = chars
                .next()
                .ok_or_else(|| format!("--format `{text}`: a `%` at the end names no field"))?;
            if !KINDS.contains(kind) {
                return Err(format!(
                    "--format `{text}`: unknown field `%{kind}` (fields: %i id, %j name, %u user, %q queue, %t state letter, %T state, %M time used, %l walltime, %D VMs, %N nodes, %R reason, %p priority, %e exit code)"
                ));
            }
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            let width = width.parse().unwrap_or(0);
            pieces.push(Piece::Field { kind, width, right });
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Layout(pieces))
    }

    /// The header line: each field's title in its place.
    pub fn header(&self) -> String {
        self.render_with(|kind| title(kind).to_string())
    }

    pub fn line(&self, row: &Row) -> String {
        self.render_with(|kind| match kind {
            'i' => row.id.clone(),
            _ => value(kind, row.job),
        })
    }

    fn render_with(&self, text_of: impl Fn(char) -> String) -> String {
        let mut s = String::new();
        for p in &self.0 {
            match p {
                Piece::Text(t) => s.push_str(t),
                Piece::Field { kind, width, right } => {
                    let v = text_of(*kind);
                    let pad = width.saturating_sub(v.chars().count());
                    match right {
                        true => s.push_str(&format!("{}{v}", " ".repeat(pad))),
                        false => s.push_str(&format!("{v}{}", " ".repeat(pad))),
                    }
                }
            }
        }
        s.trim_end().to_string()
    }
}

fn title(kind: char) -> &'static str {
    match kind {
        'i' => "JOBID",
        'j' => "NAME",
        'u' => "USER",
        'q' | 'P' => "QUEUE",
        't' => "ST",
        'T' => "STATE",
        'M' => "TIME",
        'l' => "TIME_LIMIT",
        'D' => "VMS",
        'N' => "NODELIST",
        'R' => "REASON",
        'p' => "PRIORITY",
        _ => "EXIT_CODE",
    }
}

fn value(kind: char, j: &JobInfo) -> String {
    match kind {
        'j' => j.name.clone(),
        'u' => j.user.clone(),
        'q' | 'P' => j.queue.clone(),
        't' => j.letter().to_string(),
        'T' => j.state.as_str().to_string(),
        'M' => hms(j.elapsed_s),
        'l' => j.walltime_s.map_or("-".into(), hms),
        'D' => j.vms.len().to_string(),
        'N' => crate::vstat::nodes_of(j),
        'R' => j.reason.clone().unwrap_or_else(|| "-".into()),
        'p' => j.priority.to_string(),
        _ => j.exit_code.map_or("-".into(), |c| c.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_parse_with_widths_and_say_what_is_wrong() {
        let l = Layout::parse("%i %t").unwrap();
        assert_eq!(l.header(), "JOBID ST");
        let l = Layout::parse("%.6i|%-4j|100%%").unwrap_err();
        assert!(l.contains("unknown field `%-`"), "{l}");
        let l = Layout::parse("%.6i|%4u|100%%").unwrap();
        assert_eq!(l.header(), " JOBID|USER|100%");
        assert!(Layout::parse("%i %").unwrap_err().contains("names no field"));
        assert!(Layout::parse("%z").unwrap_err().contains("unknown field `%z`"));
    }
}
