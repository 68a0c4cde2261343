//! Rendering results for stdout: `-o plain` (sentences for people), `-o table` (aligned
//! columns), `-o json` and `-o yaml` (the same data for scripts).
//!
//! Every command's result type implements [`Render`]; rendering is a pure function of the
//! data, so each format is unit-tested without AWS. JSON and YAML come from the type's
//! `Serialize` implementation (camelCase field names), so both always carry the same
//! fields; absent values are `null` rather than missing, so scripts can rely on the keys.

use serde::Serialize;

/// The `-o/--output` formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Sentences for people.
    #[default]
    Plain,
    /// Aligned columns with a header row.
    Table,
    /// Pretty-printed JSON.
    Json,
    /// YAML.
    Yaml,
}

/// A command's result, renderable in every [`OutputFormat`].
pub trait Render: Serialize {
    /// `-o plain`: one or more lines, each ending in `\n`.
    fn plain(&self) -> String;

    /// `-o table`: a header row and one row per item, each ending in `\n`.
    fn table(&self) -> String;
}

/// Renders `result` in `format`; the text ends with a newline.
pub fn render<R: Render + ?Sized>(result: &R, format: OutputFormat) -> String {
    match format {
        OutputFormat::Plain => result.plain(),
        OutputFormat::Table => result.table(),
        OutputFormat::Json => {
            // Results are plain structs with string keys: serializing cannot fail.
            let mut text =
                serde_json::to_string_pretty(result).expect("command results serialize to JSON");
            text.push('\n');
            text
        }
        OutputFormat::Yaml => {
            serde_yaml::to_string(result).expect("command results serialize to YAML")
        }
    }
}

/// Aligns `rows` under `header` in columns separated by two spaces; the last column is
/// not padded.
pub fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let lines = std::iter::once(header.map(str::to_owned)).chain(rows.iter().cloned());
    let mut out = String::new();
    for cells in lines {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            let pad = widths[i].saturating_sub(cell.chars().count());
            text.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

/// `-` for an absent value in a table cell.
pub fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_and_trims_the_last() {
        let text = table(
            ["NAME", "STATUS"],
            &[
                ["failover-east".into(), "created".into()],
                ["t".into(), "already present".into()],
            ],
        );
        assert_eq!(
            text,
            "NAME           STATUS\nfailover-east  created\nt              already present\n"
        );
    }

    #[test]
    fn an_empty_table_is_just_its_header() {
        assert_eq!(table(["A", "B"], &[]), "A  B\n");
    }

    #[test]
    fn or_dash_marks_absent_values() {
        assert_eq!(or_dash(None::<u64>), "-");
        assert_eq!(or_dash(Some(3)), "3");
    }
}
