//! What the commands print: aligned tables for people, JSON with `--json`.

use std::io::{self, Write};

use serde::Serialize;
use zeroize::Zeroizing;

/// A table whose columns are padded to their widest cell, two spaces apart.
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub(crate) fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells print empty, extra cells are kept).
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Writes the table as CSV: its titles, then its rows.
    pub(crate) fn write_csv(&self, out: &mut impl Write) -> io::Result<()> {
        write_csv(out, std::iter::once(&self.header).chain(&self.rows))
    }

    /// Writes the table, each column as wide as its widest cell.
    pub(crate) fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.header.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0; columns];
        for line in std::iter::once(&self.header).chain(&self.rows) {
            for (w, cell) in widths.iter_mut().zip(line) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut columns = Columns::new(widths);
        for line in std::iter::once(&self.header).chain(&self.rows) {
            columns.write(out, line)?;
        }
        Ok(())
    }
}

/// Rows of cells padded to a width per column, two spaces apart; the last column is not
/// padded and lines carry no trailing spaces. A cell wider than its column widens the column
/// for the rows that follow (rows already written stay as they were), so rows streamed poll
/// after poll (`audit tail -f`) line up again after one long cell.
pub(crate) struct Columns {
    widths: Vec<usize>,
}

impl Columns {
    /// Columns this wide to start with.
    pub(crate) fn new(widths: Vec<usize>) -> Self {
        Self { widths }
    }

    /// Writes one row (missing cells print empty, extra cells are kept unpadded).
    pub(crate) fn write(&mut self, out: &mut impl Write, cells: &[String]) -> io::Result<()> {
        let count = cells.len().max(self.widths.len());
        let mut text = String::new();
        for i in 0..count {
            let cell = cells.get(i).map_or("", String::as_str);
            let len = cell.chars().count();
            text.push_str(cell);
            if i + 1 < count {
                let width = self.widths.get(i).copied().unwrap_or(0).max(len);
                if let Some(w) = self.widths.get_mut(i) {
                    *w = width;
                }
                text.extend(std::iter::repeat_n(' ', width - len + 2));
            }
        }
        writeln!(out, "{}", text.trim_end())
    }
}

/// Writes `key  value` lines with the keys aligned.
pub(crate) fn write_fields(out: &mut impl Write, fields: &[(&str, String)]) -> io::Result<()> {
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in fields {
        writeln!(out, "{key:<width$}  {value}")?;
    }
    Ok(())
}

/// Writes `value` as pretty JSON and a newline. The text is built in zeroizing memory because
/// some answers (`token get --json`) hold a secret.
pub(crate) fn write_json<T: Serialize>(out: &mut impl Write, value: &T) -> io::Result<()> {
    let mut text = Zeroizing::new(Vec::with_capacity(4096));
    serde_json::to_writer_pretty(&mut *text, value).map_err(io::Error::other)?;
    text.push(b'\n');
    out.write_all(&text)?;
    out.flush()
}

/// An optional value for a table cell.
pub(crate) fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// Writes `rows` as CSV records (RFC 4180 quoting).
pub(crate) fn write_csv<R, F>(
    out: &mut impl Write,
    rows: impl IntoIterator<Item = R>,
) -> io::Result<()>
where
    R: IntoIterator<Item = F>,
    F: AsRef<[u8]>,
{
    let mut writer = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(&mut *out);
    for row in rows {
        writer.write_record(row).map_err(io::Error::other)?;
    }
    writer.flush()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn aligns_columns() {
        let mut t = Table::new(&["NAME", "KEY VERSION", "TOKENS"]);
        t.row(vec!["acme".into(), "1".into(), "12".into()]);
        t.row(vec!["globex-industries".into(), "3".into(), "0".into()]);
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAME               KEY VERSION  TOKENS\n\
             acme               1            12\n\
             globex-industries  3            0\n"
        );
    }

    #[test]
    fn short_rows_and_empty_last_cell_leave_no_trailing_space() {
        let mut t = Table::new(&["A", "B"]);
        t.row(vec!["x".into()]);
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "A  B\nx\n");
    }

    #[test]
    fn aligns_fields() {
        let mut out = Vec::new();
        write_fields(
            &mut out,
            &[("state", "sealed".into()), ("vault id", "v1".into())],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "state     sealed\nvault id  v1\n"
        );
    }
}
