//! Loading a corpus of records (JSON array, JSON Lines, CSV or plain text, each optionally
//! gzip-compressed) and rendering each record to one training text through a template.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use serde::Deserializer as _;
use serde::de::{IgnoredAny, SeqAccess, Visitor};

use crate::files::open_reader;
use crate::{DataError, sources};

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
    /// The corpus: a file, a directory (every corpus file under it, recursively, in path
    /// order) or a glob pattern such as `books/*.txt.gz`, relative to the working directory.
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
    /// A directory `train prepare` wrote from this corpus: training then reads its token
    /// shards through a memory map instead of reading and tokenising the corpus.
    #[serde(default)]
    pub prepared: Option<PathBuf>,
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

/// What a pass over a corpus's records read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordsRead {
    /// The files, in the order read.
    pub files: Vec<PathBuf>,
    /// Usable records.
    pub records: usize,
    /// Records missing a template field (or with it empty).
    pub skipped: usize,
    /// The placeholders the templates asked for.
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
            prepared: None,
        }
    }

    /// The files `path` names (a file, a directory or a glob pattern), in reading order.
    pub fn files(&self) -> Result<Vec<PathBuf>, DataError> {
        sources::resolve(&self.path, self.format != CorpusFormat::Auto)
    }

    /// The format of `file` after resolving `auto` from its name.
    pub fn format_of(&self, file: &Path) -> CorpusFormat {
        if self.format != CorpusFormat::Auto {
            return self.format;
        }
        let name = file.to_string_lossy().to_ascii_lowercase();
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

    /// The template in force for a file of `format`.
    pub fn template_for(&self, format: CorpusFormat) -> &str {
        match (&self.template, format) {
            (Some(t), _) => t,
            (None, CorpusFormat::Text) => "{text}",
            (None, _) => RECIPE_TEMPLATE,
        }
    }

    /// Reads every record into memory (see [`CorpusSpec::read_records`]).
    pub fn load(&self) -> Result<LoadedCorpus, DataError> {
        let mut texts = Vec::new();
        let read = self.read_records(|text| {
            texts.push(text.to_owned());
            Ok(())
        })?;
        Ok(LoadedCorpus {
            texts,
            skipped: read.skipped,
            fields: read.fields,
        })
    }

    /// Streams the corpus, file by file, calling `each` with every usable record rendered
    /// through the template (at most `max_records` of them); an error if none is usable.
    /// Memory stays flat however large the files are.
    pub fn read_records(
        &self,
        mut each: impl FnMut(&str) -> Result<(), DataError>,
    ) -> Result<RecordsRead, DataError> {
        let files = self.files()?;
        let mut read = RecordsRead {
            files: files.clone(),
            records: 0,
            skipped: 0,
            fields: Vec::new(),
        };
        for file in &files {
            let format = self.format_of(file);
            let template =
                Template::parse(self.template_for(format)).map_err(|detail| DataError::Format {
                    path: file.clone(),
                    detail,
                })?;
            for field in &template.fields {
                if !read.fields.contains(field) {
                    read.fields.push(field.clone());
                }
            }
            let mut keep = |rendered: Option<String>| -> Result<bool, DataError> {
                match rendered {
                    Some(text) => {
                        each(&text)?;
                        read.records += 1;
                    }
                    None => read.skipped += 1,
                }
                Ok(self.max_records.is_none_or(|max| read.records < max))
            };
            let more = read_file(file, format, &template, &mut keep)?;
            if !more {
                break;
            }
        }
        if read.records == 0 {
            return Err(DataError::Empty {
                path: self.path.clone(),
                detail: format!(
                    "no usable records ({} skipped): every record needs the fields {}",
                    read.skipped,
                    read.fields.join(", ")
                ),
            });
        }
        Ok(read)
    }

    /// Streams the corpus as one continuous text, calling `each` with consecutive pieces:
    /// plain-text files exactly as they are (newlines and blank lines kept), other formats'
    /// records joined by newlines; an error if it is empty.
    pub fn read_stream(
        &self,
        mut each: impl FnMut(&str) -> Result<(), DataError>,
    ) -> Result<Vec<PathBuf>, DataError> {
        let mut started = false;
        let mut ends_line = true;
        let mut files = Vec::new();
        for file in self.files()? {
            if self.format_of(&file) != CorpusFormat::Text {
                let spec = CorpusSpec {
                    path: file.clone(),
                    ..self.clone()
                };
                spec.read_records(|text| {
                    if started {
                        each("\n")?;
                    }
                    started = true;
                    ends_line = text.ends_with('\n');
                    each(text)
                })?;
            } else {
                lines(&file, |_, line| {
                    if started && !ends_line {
                        each("\n")?;
                    }
                    started = true;
                    ends_line = line.ends_with('\n');
                    each(line).map(|()| true)
                })?;
            }
            files.push(file);
        }
        if !started {
            return Err(DataError::Empty {
                path: self.path.clone(),
                detail: "the file is empty".into(),
            });
        }
        Ok(files)
    }
}

/// Reads one file's records through `keep`, which says whether to go on; returns false when
/// it said stop.
fn read_file(
    path: &Path,
    format: CorpusFormat,
    template: &Template,
    keep: &mut impl FnMut(Option<String>) -> Result<bool, DataError>,
) -> Result<bool, DataError> {
    match format {
        CorpusFormat::Json => read_json_array(path, template, keep),
        CorpusFormat::Jsonl => lines(path, |n, line| {
            if line.trim().is_empty() {
                return Ok(true);
            }
            let r: Value = serde_json::from_str(line).map_err(|e| DataError::Format {
                path: path.to_owned(),
                detail: format!("line {n}: not a JSON object: {e}"),
            })?;
            keep(template.render(|f| json_field(&r, f)))
        }),
        CorpusFormat::Csv => read_csv(path, template, keep),
        CorpusFormat::Text | CorpusFormat::Auto => lines(path, |_, line| {
            let line = line.strip_suffix('\n').unwrap_or(line);
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() {
                return Ok(true);
            }
            keep(template.render(|f| (f == "text").then(|| line.to_owned())))
        }),
    }
}

/// Calls `each` with every line of a (possibly gzip-compressed) UTF-8 file, newline kept,
/// and its 1-based number, until it returns false; returns false when it did.
fn lines(
    path: &Path,
    mut each: impl FnMut(usize, &str) -> Result<bool, DataError>,
) -> Result<bool, DataError> {
    let mut reader = open_reader(path)?;
    let mut buf = Vec::new();
    let mut offset = 0;
    for n in 1.. {
        buf.clear();
        let read = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| read_error(path, e))?;
        if read == 0 {
            break;
        }
        let line = std::str::from_utf8(&buf).map_err(|e| DataError::Utf8 {
            path: path.to_owned(),
            detail: format!("invalid byte sequence at byte {}", offset + e.valid_up_to()),
        })?;
        if !each(n, line)? {
            return Ok(false);
        }
        offset += read;
    }
    Ok(true)
}

/// A read error: a broken gzip stream is a format problem, the rest the system's.
fn read_error(path: &Path, e: std::io::Error) -> DataError {
    match e.kind() {
        std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData => DataError::Format {
            path: path.to_owned(),
            detail: format!("not a valid gzip file ({e})"),
        },
        _ => DataError::Io {
            path: path.to_owned(),
            source: e,
        },
    }
}

/// Streams a JSON array of objects, one element at a time.
fn read_json_array(
    path: &Path,
    template: &Template,
    keep: &mut impl FnMut(Option<String>) -> Result<bool, DataError>,
) -> Result<bool, DataError> {
    struct Records<'a, K> {
        template: &'a Template,
        keep: &'a mut K,
        failed: &'a mut Option<DataError>,
    }
    impl<'de, K: FnMut(Option<String>) -> Result<bool, DataError>> Visitor<'de> for Records<'_, K> {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON array of objects")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
            let mut more = true;
            while more {
                let Some(r) = seq.next_element::<Value>()? else {
                    return Ok(true);
                };
                match (self.keep)(self.template.render(|f| json_field(&r, f))) {
                    Ok(go_on) => more = go_on,
                    Err(e) => {
                        *self.failed = Some(e);
                        return Err(serde::de::Error::custom("stopped"));
                    }
                }
            }
            // The rest is read without being kept, so the array is still checked to its end.
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(false)
        }
    }
    let mut failed = None;
    let mut de = serde_json::Deserializer::from_reader(open_reader(path)?);
    let records = Records {
        template,
        keep,
        failed: &mut failed,
    };
    let result = de
        .deserialize_seq(records)
        .and_then(|more| de.end().map(|()| more));
    match (result, failed) {
        (_, Some(e)) => Err(e),
        (Ok(more), None) => Ok(more),
        (Err(e), None) if e.is_io() => Err(read_error(path, e.into())),
        (Err(e), None) => Err(DataError::Format {
            path: path.to_owned(),
            detail: format!("not a JSON array of objects: {e}"),
        }),
    }
}

fn read_csv(
    path: &Path,
    template: &Template,
    keep: &mut impl FnMut(Option<String>) -> Result<bool, DataError>,
) -> Result<bool, DataError> {
    let csv_err = |e: csv::Error| DataError::Format {
        path: path.to_owned(),
        detail: format!("CSV: {e}"),
    };
    let mut reader = csv::Reader::from_reader(open_reader(path)?);
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
        if !keep(template.render(field))? {
            return Ok(false);
        }
    }
    Ok(true)
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
        let e = CorpusSpec::new(&p)
            .read_stream(|_| Ok(()))
            .unwrap_err()
            .to_string();
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
