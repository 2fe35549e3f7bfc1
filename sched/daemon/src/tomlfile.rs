//! Reading TOML files (cluster configurations, job specs) with errors that point at the place:
//! `job.toml: line 7: field vm.count: invalid type: string "a", expected u32`.
//!
//! Files are deserialized into raw structs (`deny_unknown_fields`, values wrapped in
//! [`toml::Spanned`] where later validation needs their position), then validated; both steps
//! report a [`FileError`] naming the file, the line and the field.

use std::ops::Range;

use serde::de::DeserializeOwned;

/// An error in a file, located as precisely as known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub file: String,
    pub line: Option<usize>,
    pub field: Option<String>,
    pub message: String,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ": line {line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for FileError {}

/// A file's text and name, to locate errors in.
pub struct Source<'a> {
    pub file: &'a str,
    pub text: &'a str,
}

impl Source<'_> {
    /// The 1-based line holding byte `offset`.
    pub fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
    }

    /// An error at `span` about `field`.
    pub fn error(&self, span: Option<Range<usize>>, field: &str, message: impl Into<String>) -> FileError {
        FileError {
            file: self.file.to_string(),
            line: span.map(|s| self.line_of(s.start)),
            field: (!field.is_empty()).then(|| field.to_string()),
            message: message.into(),
        }
    }

    /// An error about the spanned value of `field`.
    pub fn at<T>(&self, value: &toml::Spanned<T>, field: &str, message: impl Into<String>) -> FileError {
        self.error(Some(value.span()), field, message)
    }

    /// Deserializes the whole file into `T`, locating syntax and type errors.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, FileError> {
        let de = toml::Deserializer::new(self.text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let field = path
                .split('.')
                .filter(|p| !p.starts_with("$__") && !p.is_empty())
                .collect::<Vec<_>>()
                .join(".");
            let message = inner.message().trim().replace('\n', " ");
            // A missing field has no place of its own; pointing at line 1 would mislead.
            let span = if message.starts_with("missing field") {
                None
            } else {
                inner.span()
            };
            self.error(span, &field, message)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        a: Option<toml::Spanned<u32>>,
        t: Option<Table>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Table {
        b: Option<u32>,
    }

    fn err(text: &str) -> String {
        Source { file: "x.toml", text }.parse::<Doc>().unwrap_err().to_string()
    }

    #[test]
    fn errors_name_file_line_and_field() {
        assert_eq!(
            err("a = 1\n[t]\nb = 'no'\n"),
            "x.toml: line 3: field t.b: invalid type: string \"no\", expected u32"
        );
        assert!(err("a = 'x'\n").starts_with("x.toml: line 1: field a: invalid type"));
        assert!(err("\n[t]\nc = 1\n").starts_with("x.toml: line 3: field t.c: unknown field `c`"));
        assert!(err("[t\n").starts_with("x.toml: line 1: "));
    }
}
