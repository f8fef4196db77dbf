//! Printing: aligned tables for people, JSON documents for scripts.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use regsweep_proto::pbjson_types::Timestamp;
use regsweep_proto::timestamp_to_chrono;
use serde::Serialize;

/// Prints one JSON document (an object or an array) with proto field names.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A table with a header row; columns are padded to their widest cell.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self { rows: vec![header.iter().map(|h| h.to_string()).collect()] }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    pub fn print(&self) {
        print!("{}", self.render());
    }
}

/// Key/value lines for one resource.
pub fn fields(pairs: &[(&str, String)]) {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in pairs {
        println!("{key:<width$}  {value}");
    }
}

pub fn time(ts: Option<&Timestamp>) -> String {
    ts.and_then(timestamp_to_chrono).map_or_else(|| "-".to_string(), format_time)
}

pub fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Reports a deletion: a line for people, `{"name": .., "deleted": true}` for scripts.
pub fn deleted(format: crate::cli::Output, what: &str, name: &str) -> anyhow::Result<()> {
    match format {
        crate::cli::Output::Json => json(&serde_json::json!({"name": name, "deleted": true})),
        crate::cli::Output::Table => {
            println!("{what} {name} deleted");
            Ok(())
        }
    }
}

/// The first `n` characters, for ids in narrow columns.
pub fn short(text: &str, n: usize) -> String {
    if text.is_empty() { "-".to_string() } else { text.chars().take(n).collect() }
}

pub use regsweep_common::units::bytes;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["ID", "STATUS"]);
        t.row(vec!["1".into(), "done".into()]);
        t.row(vec!["1234".into(), "waiting".into()]);
        assert_eq!(t.render(), "ID    STATUS\n1     done\n1234  waiting\n");
    }
}
