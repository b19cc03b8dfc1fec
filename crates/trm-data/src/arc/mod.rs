//! ARC: task files (folders of task JSONs and the Kaggle-combined files TRM reads), the
//! 30x30 encoding, augmentations and their inverses, and the official TRM builder.

pub mod build;
pub mod encode;

use std::path::{Path, PathBuf};

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::grid::Grid;
use crate::DataError;

/// Largest ARC grid side (and the canvas side).
pub const MAX_SIDE: usize = 30;

/// Which part of a task a list of pairs came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Section {
    Train,
    Test,
}

impl Section {
    fn key(self) -> &'static str {
        match self {
            Section::Train => "train",
            Section::Test => "test",
        }
    }
}

/// One demonstration or test pair; grids hold colours 0..=9.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArcPair {
    pub input: Grid,
    pub output: Grid,
}

impl Serialize for ArcPair {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let rows = |g: &Grid| -> Vec<Vec<u8>> { g.cells.chunks(g.cols).map(|r| r.to_vec()).collect() };
        let mut st = s.serialize_struct("ArcPair", 2)?;
        st.serialize_field("input", &rows(&self.input))?;
        st.serialize_field("output", &rows(&self.output))?;
        st.end()
    }
}

/// A task with its sections in file order (the order decides the order of examples in the
/// official builder, and the Kaggle files put `test` first for ARC-AGI-1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArcTask {
    pub name: String,
    pub sections: Vec<(Section, Vec<ArcPair>)>,
}

impl ArcTask {
    pub fn pairs(&self, section: Section) -> impl Iterator<Item = &ArcPair> {
        self.sections.iter().filter(move |(s, _)| *s == section).flat_map(|(_, p)| p)
    }
}

impl Serialize for ArcTask {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.sections.len()))?;
        for (sec, pairs) in &self.sections {
            m.serialize_entry(sec.key(), pairs)?;
        }
        m.end()
    }
}

/// A JSON object read with its keys in file order (serde_json's own map sorts them).
pub(crate) struct Ordered<V>(pub Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Vis<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Vis<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Ordered<V>, A::Error> {
                let mut v = Vec::new();
                while let Some((k, val)) = a.next_entry::<String, V>()? {
                    v.push((k, val));
                }
                Ok(Ordered(v))
            }
        }
        d.deserialize_map(Vis(std::marker::PhantomData))
    }
}

/// Parse a grid: a non-empty list of equally long, non-empty rows of integers 0..=9, at
/// most 30 x 30.
pub fn parse_grid(v: &Value) -> Result<Grid, String> {
    let rows = v.as_array().ok_or("grid is not a list of rows")?;
    if rows.is_empty() || rows.len() > MAX_SIDE {
        return Err(format!("grid has {} rows (must be 1..=30)", rows.len()));
    }
    let mut cells = Vec::new();
    let mut cols = None;
    for (r, row) in rows.iter().enumerate() {
        let row = row.as_array().ok_or_else(|| format!("row {r} is not a list"))?;
        if *cols.get_or_insert(row.len()) != row.len() {
            return Err(format!("ragged grid: row {r} has {} cells, row 0 has {}", row.len(), cols.unwrap_or(0)));
        }
        if row.is_empty() || row.len() > MAX_SIDE {
            return Err(format!("grid has {} columns (must be 1..=30)", row.len()));
        }
        for (c, x) in row.iter().enumerate() {
            match x.as_u64() {
                Some(k) if k <= 9 => cells.push(k as u8),
                _ => return Err(format!("colour {x} at row {r}, column {c} is not an integer 0-9")),
            }
        }
    }
    let cols = cols.unwrap_or(0);
    Ok(Grid::new(rows.len(), cols, cells))
}

fn parse_pairs(v: &Value, need_output: bool) -> Result<Vec<(Grid, Option<Grid>)>, String> {
    let list = v.as_array().ok_or("expected a list of pairs")?;
    list.iter()
        .enumerate()
        .map(|(k, p)| {
            let input = p.get("input").ok_or_else(|| format!("pair {k} has no \"input\""))?;
            let input = parse_grid(input).map_err(|e| format!("pair {k} input: {e}"))?;
            let output = match p.get("output") {
                Some(o) => Some(parse_grid(o).map_err(|e| format!("pair {k} output: {e}"))?),
                None if need_output => return Err(format!("pair {k} has no \"output\"")),
                None => None,
            };
            Ok((input, output))
        })
        .collect()
}

/// Parse one task object. Keys other than `train`/`test` (e.g. `name`) are ignored.
/// Test pairs without outputs take them from `solutions` (Kaggle layout) in order.
fn parse_task(path: &Path, name: &str, obj: Ordered<Value>, solutions: Option<&Value>) -> Result<ArcTask, DataError> {
    let err = |m: String| DataError::task(path, name, m);
    let mut sections = Vec::new();
    for (k, val) in obj.0 {
        let section = match k.as_str() {
            "train" => Section::Train,
            "test" => Section::Test,
            _ => continue,
        };
        let raw = parse_pairs(&val, section == Section::Train).map_err(|m| err(format!("{k}: {m}")))?;
        let mut pairs = Vec::with_capacity(raw.len());
        for (i, (input, output)) in raw.into_iter().enumerate() {
            let output = match output {
                Some(o) => o,
                None => {
                    let sol = solutions
                        .and_then(|s| s.as_array())
                        .ok_or_else(|| err("test inputs have no outputs and no solutions were given".into()))?;
                    let g = sol.get(i).ok_or_else(|| err(format!("no solution for test input {i}")))?;
                    parse_grid(g).map_err(|m| err(format!("solution {i}: {m}")))?
                }
            };
            pairs.push(ArcPair { input, output });
        }
        if section == Section::Test {
            if let Some(n) = solutions.and_then(|s| s.as_array()).map(|s| s.len()) {
                if n != pairs.len() {
                    return Err(err(format!("{n} solutions for {} test inputs", pairs.len())));
                }
            }
        }
        sections.push((section, pairs));
    }
    let task = ArcTask { name: name.to_owned(), sections };
    if task.pairs(Section::Train).next().is_none() {
        return Err(err("task has no train pairs".into()));
    }
    Ok(task)
}

fn read_json(path: &Path) -> Result<Value, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| DataError::json(path, e))
}

/// Parse one task file (`{"train": [...], "test": [...]}`, outputs required).
pub fn parse_task_file(path: &Path, name: &str, bytes: &[u8]) -> Result<ArcTask, DataError> {
    let v: Ordered<Value> =
        serde_json::from_slice(bytes).map_err(|e| DataError::task(path, name, format!("not a task object: {e}")))?;
    parse_task(path, name, v, None)
}

/// Read every `*.json` task under `dir` (recursively), sorted by path; the task name is
/// the file stem.
pub fn read_task_dir(dir: &Path) -> Result<Vec<ArcTask>, DataError> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
        for e in std::fs::read_dir(d).map_err(|e| DataError::io(d, e))? {
            let p = e.map_err(|e| DataError::io(d, e))?.path();
            if p.is_dir() {
                walk(&p, out)?;
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    files.sort();
    files
        .iter()
        .map(|p| {
            let name = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let bytes = std::fs::read(p).map_err(|e| DataError::io(p, e))?;
            parse_task_file(p, &name, &bytes)
        })
        .collect()
}

/// Read `{prefix}_{subset}_challenges.json` and, if present, `{prefix}_{subset}_solutions.json`
/// (Kaggle layout), tasks in file order. Without a solutions file, test outputs are the
/// dummy `[[0]]`, as in the official builder.
pub fn read_kaggle_subset(prefix: &Path, subset: &str) -> Result<Vec<ArcTask>, DataError> {
    let base = prefix.to_string_lossy();
    let ch_path = PathBuf::from(format!("{base}_{subset}_challenges.json"));
    let sol_path = PathBuf::from(format!("{base}_{subset}_solutions.json"));
    let challenges: Ordered<Ordered<Value>> = {
        let bytes = std::fs::read(&ch_path).map_err(|e| DataError::io(&ch_path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| DataError::json(&ch_path, e))?
    };
    let solutions = if sol_path.is_file() { Some(read_json(&sol_path)?) } else { None };
    challenges
        .0
        .into_iter()
        .map(|(name, v)| {
            let sol = match &solutions {
                Some(s) => Some(
                    s.get(&name)
                        .ok_or_else(|| DataError::task(&sol_path, &name, "task missing from the solutions file"))?,
                ),
                None => None,
            };
            let v = if sol.is_none() { fill_dummy_outputs(v) } else { v };
            parse_task(&ch_path, &name, v, sol)
        })
        .collect()
}

fn fill_dummy_outputs(mut v: Ordered<Value>) -> Ordered<Value> {
    for (k, val) in &mut v.0 {
        if k != "test" {
            continue;
        }
        for p in val.as_array_mut().into_iter().flatten() {
            if let Some(o) = p.as_object_mut() {
                o.entry("output").or_insert(serde_json::json!([[0]]));
            }
        }
    }
    v
}

/// Write an ordered `{name: task}` map (used for `test_puzzles.json`).
pub fn write_tasks_json(path: &Path, tasks: &[&ArcTask]) -> Result<(), DataError> {
    struct M<'a>(&'a [&'a ArcTask]);
    impl Serialize for M<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(Some(self.0.len()))?;
            for t in self.0 {
                m.serialize_entry(&t.name, t)?;
            }
            m.end()
        }
    }
    crate::metadata::write_python_json(path, &M(tasks))
}

/// Read `test_puzzles.json` back: `(name, task)` in file order.
pub fn read_tasks_json(path: &Path) -> Result<Vec<ArcTask>, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let o: Ordered<Ordered<Value>> = serde_json::from_slice(&bytes).map_err(|e| DataError::json(path, e))?;
    o.0.into_iter().map(|(name, v)| parse_task(path, &name, v, None)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_errors_name_the_problem() {
        let p = Path::new("t.json");
        let t = |s: &str| parse_task_file(p, "abc", s.as_bytes()).unwrap_err().to_string();
        assert!(t(r#"{"train":[{"input":[[1,2],[3]],"output":[[1]]}]}"#).contains("ragged"));
        assert!(t(r#"{"train":[{"input":[[10]],"output":[[1]]}]}"#).contains("colour 10"));
        assert!(t(r#"{"train":[{"input":[[-1]],"output":[[1]]}]}"#).contains("colour -1"));
        let big = format!("[{}]", vec!["[0]"; 31].join(","));
        assert!(t(&format!(r#"{{"train":[{{"input":{big},"output":[[1]]}}]}}"#)).contains("31 rows"));
        assert!(t(r#"{"train":[{"input":[[1]]}]}"#).contains("no \"output\""));
        assert!(t("[1,2]").contains("task abc"));
        assert!(t(r#"{"train": 5}"#).contains("expected a list of pairs"));
        let ok = parse_task_file(
            p,
            "abc",
            br#"{"test":[{"input":[[1]],"output":[[2]]}],"name":"x","train":[{"input":[[3,4]],"output":[[5],[6]]}]}"#,
        )
        .unwrap();
        assert_eq!(ok.sections[0].0, Section::Test);
        assert_eq!(ok.pairs(Section::Train).next().unwrap().output, Grid::new(2, 1, vec![5, 6]));
    }

    #[test]
    fn writes_python_style_ordered_json() {
        let p = Path::new("t.json");
        let task = parse_task_file(
            p,
            "t1",
            br#"{"test":[{"input":[[1]],"output":[[2]]}],"train":[{"input":[[3,4]],"output":[[5],[6]]}]}"#,
        )
        .unwrap();
        let text = String::from_utf8(crate::metadata::to_python_json(&task).unwrap()).unwrap();
        assert_eq!(
            text,
            r#"{"test": [{"input": [[1]], "output": [[2]]}], "train": [{"input": [[3, 4]], "output": [[5], [6]]}]}"#
        );
    }
}
