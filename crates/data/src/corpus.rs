//! Loading a corpus of records (JSON array, JSON Lines, CSV or plain text, each optionally
//! gzip-compressed) and rendering each record to one training text through a template.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::DataError;
use crate::files::read_text;

/// The chapter's record template: list fields such as `directions` are joined by spaces.
pub const RECIPE_TEMPLATE: &str = "Recipe for {title} | {directions}";

/// How a corpus file is laid out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CorpusFormat {
    /// From the file name: `.json`, `.jsonl`/`.ndjson`, `.csv`, anything else is text.
    #[default]
    Auto,
    /// A JSON array of objects.
    Json,
    /// One JSON object a line.
    Jsonl,
    /// CSV with a header row naming the columns.
    Csv,
    /// Plain UTF-8 text, one record a non-empty line, available to the template as `{text}`.
    Text,
}

/// Where a corpus is and how its records become texts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusSpec {
    /// The corpus file, relative to the working directory.
    pub path: PathBuf,
    /// Its layout; `auto` decides from the file name.
    #[serde(default)]
    pub format: CorpusFormat,
    /// `{field}` placeholders are replaced by the record's fields; defaults to the recipe
    /// template, or `{text}` for plain text.
    #[serde(default)]
    pub template: Option<String>,
    /// Use only the first N usable records (for quick experiments and tests).
    #[serde(default)]
    pub max_records: Option<usize>,
}

/// The texts rendered from a corpus and how many records were skipped.
#[derive(Debug, Clone)]
pub struct LoadedCorpus {
    /// One text per usable record, in file order.
    pub texts: Vec<String>,
    /// Records missing a template field (or with it empty).
    pub skipped: usize,
    /// The placeholders the template asked for.
    pub fields: Vec<String>,
}

impl CorpusSpec {
    /// A spec for `path` with the default format and template.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            format: CorpusFormat::Auto,
            template: None,
            max_records: None,
        }
    }

    /// The format after resolving `auto` from the file name.
    pub fn resolved_format(&self) -> CorpusFormat {
        if self.format != CorpusFormat::Auto {
            return self.format;
        }
        let name = self.path.to_string_lossy().to_ascii_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        if name.ends_with(".json") {
            CorpusFormat::Json
        } else if name.ends_with(".jsonl") || name.ends_with(".ndjson") {
            CorpusFormat::Jsonl
        } else if name.ends_with(".csv") {
            CorpusFormat::Csv
        } else {
            CorpusFormat::Text
        }
    }

    /// The template in force.
    pub fn resolved_template(&self) -> &str {
        match (&self.template, self.resolved_format()) {
            (Some(t), _) => t,
            (None, CorpusFormat::Text) => "{text}",
            (None, _) => RECIPE_TEMPLATE,
        }
    }

    /// Reads the corpus and renders every record; an error if no record is usable.
    pub fn load(&self) -> Result<LoadedCorpus, DataError> {
        let path = self.path.as_path();
        let template =
            Template::parse(self.resolved_template()).map_err(|detail| DataError::Format {
                path: path.to_owned(),
                detail,
            })?;
        let text = read_text(path)?;
        let mut texts = Vec::new();
        let mut skipped = 0;
        let mut keep = |rendered: Option<String>| {
            match rendered {
                Some(t) => texts.push(t),
                None => skipped += 1,
            }
            self.max_records.is_none_or(|max| texts.len() < max)
        };
        match self.resolved_format() {
            CorpusFormat::Json => {
                let records: Vec<Value> =
                    serde_json::from_str(&text).map_err(|e| DataError::Format {
                        path: path.to_owned(),
                        detail: format!("not a JSON array of objects: {e}"),
                    })?;
                for r in &records {
                    if !keep(template.render(|f| json_field(r, f))) {
                        break;
                    }
                }
            }
            CorpusFormat::Jsonl => {
                for (n, line) in text
                    .lines()
                    .enumerate()
                    .filter(|(_, l)| !l.trim().is_empty())
                {
                    let r: Value = serde_json::from_str(line).map_err(|e| DataError::Format {
                        path: path.to_owned(),
                        detail: format!("line {}: not a JSON object: {e}", n + 1),
                    })?;
                    if !keep(template.render(|f| json_field(&r, f))) {
                        break;
                    }
                }
            }
            CorpusFormat::Csv => load_csv(path, &text, &template, &mut keep)?,
            CorpusFormat::Text | CorpusFormat::Auto => {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    if !keep(template.render(|f| (f == "text").then(|| line.to_owned()))) {
                        break;
                    }
                }
            }
        }
        if texts.is_empty() {
            return Err(DataError::Empty {
                path: path.to_owned(),
                detail: format!(
                    "no usable records ({skipped} skipped): every record needs the fields {}",
                    template.fields.join(", ")
                ),
            });
        }
        Ok(LoadedCorpus {
            texts,
            skipped,
            fields: template.fields,
        })
    }
}

impl CorpusSpec {
    /// The corpus as one continuous text: a plain-text file exactly as it is (newlines and
    /// blank lines kept), other formats as their rendered records joined by newlines.
    pub fn load_stream(&self) -> Result<String, DataError> {
        if self.resolved_format() != CorpusFormat::Text {
            return Ok(self.load()?.texts.join("\n"));
        }
        let text = read_text(&self.path)?;
        if text.is_empty() {
            return Err(DataError::Empty {
                path: self.path.clone(),
                detail: "the file is empty".into(),
            });
        }
        Ok(text)
    }
}

fn load_csv(
    path: &Path,
    text: &str,
    template: &Template,
    keep: &mut impl FnMut(Option<String>) -> bool,
) -> Result<(), DataError> {
    let csv_err = |e: csv::Error| DataError::Format {
        path: path.to_owned(),
        detail: format!("CSV: {e}"),
    };
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().map_err(csv_err)?.clone();
    if let Some(missing) = template
        .fields
        .iter()
        .find(|f| !headers.iter().any(|h| h == f.as_str()))
    {
        return Err(DataError::Format {
            path: path.to_owned(),
            detail: format!(
                "the template's field `{missing}` is not a column (columns: {})",
                headers.iter().collect::<Vec<_>>().join(", ")
            ),
        });
    }
    for row in reader.records() {
        let row = row.map_err(csv_err)?;
        let field = |f: &str| {
            let i = headers.iter().position(|h| h == f)?;
            row.get(i).filter(|v| !v.is_empty()).map(str::to_owned)
        };
        if !keep(template.render(field)) {
            break;
        }
    }
    Ok(())
}

/// A JSON field as text: strings as they are, lists of strings joined by spaces, numbers
/// printed; `None` when missing, null or empty (as the chapter's `if r.get(field)`).
fn json_field(record: &Value, field: &str) -> Option<String> {
    let text = match record.get(field)? {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" "),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null | Value::Object(_) => return None,
    };
    (!text.is_empty()).then_some(text)
}

/// A record template split into literal text and `{field}` placeholders.
struct Template {
    parts: Vec<(String, Option<String>)>,
    fields: Vec<String>,
}

impl Template {
    fn parse(template: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let close = rest[open..].find('}').ok_or_else(|| {
                format!("template `{template}` has a `{{` without a closing `}}`")
            })?;
            let name = &rest[open + 1..open + close];
            if name.is_empty() {
                return Err(format!(
                    "template `{template}` has an empty placeholder `{{}}`"
                ));
            }
            parts.push((rest[..open].to_owned(), Some(name.to_owned())));
            rest = &rest[open + close + 1..];
        }
        parts.push((rest.to_owned(), None));
        let fields: Vec<String> = parts.iter().filter_map(|(_, f)| f.clone()).collect();
        if fields.is_empty() {
            return Err(format!("template `{template}` names no `{{field}}`"));
        }
        Ok(Self { parts, fields })
    }

    fn render(&self, mut field: impl FnMut(&str) -> Option<String>) -> Option<String> {
        let mut out = String::new();
        for (literal, name) in &self.parts {
            out.push_str(literal);
            if let Some(name) = name {
                out.push_str(&field(name)?);
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, body: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("corpus-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    #[test]
    fn json_records_use_the_recipe_template_and_skip_incomplete_ones() {
        let p = write(
            "r.json",
            r#"[{"title":"Toast","directions":["Toast bread.","Butter it."]},
                {"title":"","directions":["x"]},{"title":"No steps"}]"#,
        );
        let c = CorpusSpec::new(&p).load().unwrap();
        assert_eq!(c.texts, ["Recipe for Toast | Toast bread. Butter it."]);
        assert_eq!(c.skipped, 2);
    }

    #[test]
    fn csv_and_jsonl_and_text() {
        let p = write("r.csv", "name,steps\nSoup,Boil water.\nTea,\n");
        let mut spec = CorpusSpec::new(&p);
        spec.template = Some("{name}: {steps}".into());
        let c = spec.load().unwrap();
        assert_eq!(
            (c.texts.as_slice(), c.skipped),
            (&["Soup: Boil water.".to_owned()][..], 1)
        );

        let p = write(
            "r.jsonl",
            "{\"title\":\"A\",\"directions\":\"b\"}\n\n{\"title\":\"C\",\"directions\":[\"d\"]}\n",
        );
        assert_eq!(CorpusSpec::new(&p).load().unwrap().texts.len(), 2);

        let p = write("r.txt", "first line\n\nsecond line\n");
        assert_eq!(
            CorpusSpec::new(&p).load().unwrap().texts,
            ["first line", "second line"]
        );
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let missing = CorpusSpec::new("no/such/file.json")
            .load()
            .unwrap_err()
            .to_string();
        assert!(missing.contains("no/such/file.json"), "{missing}");

        let p = write("bad.txt", "");
        std::fs::write(&p, b"ok \xff\xfe bad").unwrap();
        let e = CorpusSpec::new(&p).load().unwrap_err().to_string();
        assert!(
            e.contains("bad.txt") && e.contains("UTF-8") && e.contains("byte 3"),
            "{e}"
        );

        let p = write("empty.txt", "");
        let e = CorpusSpec::new(&p).load_stream().unwrap_err().to_string();
        assert!(e.contains("empty.txt") && e.contains("empty"), "{e}");

        let p = write("empty.json", "[]");
        let e = CorpusSpec::new(&p).load().unwrap_err().to_string();
        assert!(
            e.contains("empty.json") && e.contains("no usable records"),
            "{e}"
        );

        let p = write("cols.csv", "a,b\n1,2\n");
        let e = CorpusSpec::new(&p).load().unwrap_err().to_string();
        assert!(e.contains("`title` is not a column"), "{e}");
    }
}
