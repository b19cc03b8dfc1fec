//! `dataset.json` (the official `PuzzleDatasetMetadata`) and Python-compatible JSON output.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::DataError;

/// The metadata of one split, field for field the official `PuzzleDatasetMetadata`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetMetadata {
    pub pad_id: i32,
    /// Label value that becomes -100 (ignored) at load time; `None` ignores nothing.
    pub ignore_label_id: Option<i32>,
    /// Puzzle identifier used for padding rows (0 = `<blank>`).
    pub blank_identifier_id: i32,
    pub vocab_size: usize,
    pub seq_len: usize,
    pub num_puzzle_identifiers: usize,
    pub total_groups: usize,
    pub mean_puzzle_examples: f64,
    /// HRM's builders do not write this field; TRM's do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_puzzles: Option<usize>,
    pub sets: Vec<String>,
}

impl DatasetMetadata {
    /// Read `dataset.json`.
    pub fn load(path: &Path) -> Result<Self, DataError> {
        let text = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        serde_json::from_slice(&text).map_err(|e| DataError::json(path, e))
    }

    /// Write `dataset.json` the way `json.dump(metadata.model_dump(), f)` does.
    pub fn save(&self, path: &Path) -> Result<(), DataError> {
        write_python_json(path, self)
    }
}

/// A serde_json formatter that spaces like Python's `json.dump` defaults
/// (`", "` between items, `": "` after keys), so our JSON files diff cleanly against the
/// official builders' files.
pub struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + Write>(&mut self, writer: &mut W, first: bool) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, writer: &mut W, first: bool) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        writer.write_all(b": ")
    }

    // Python writes floats with repr(): 1.0 stays "1.0", like serde_json, and both print
    // the shortest round-trip digits.
}

/// Serialise `value` with [`PythonFormatter`] into a byte vector.
pub fn to_python_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    value.serialize(&mut ser)?;
    Ok(out)
}

/// Write `value` to `path` as Python's `json.dump` would.
pub fn write_python_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), DataError> {
    let bytes = to_python_json(value).map_err(|e| DataError::json(path, e))?;
    std::fs::write(path, bytes).map_err(|e| DataError::io(path, e))
}

/// Read `identifiers.json`: the name of each puzzle identifier, index = identifier.
pub fn load_identifiers(path: &Path) -> Result<Vec<String>, DataError> {
    let text = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    serde_json::from_slice(&text).map_err(|e| DataError::json(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The exact text the official Sudoku builder writes for 1000 subsampled puzzles
    // (pydantic coerces mean_puzzle_examples=1 to 1.0; key order is the class order).
    const OFFICIAL: &str = r#"{"pad_id": 0, "ignore_label_id": 0, "blank_identifier_id": 0, "vocab_size": 11, "seq_len": 81, "num_puzzle_identifiers": 1, "total_groups": 1000, "mean_puzzle_examples": 1.0, "total_puzzles": 1000, "sets": ["all"]}"#;

    #[test]
    fn round_trips_official_text() {
        let m: DatasetMetadata = serde_json::from_str(OFFICIAL).unwrap();
        assert_eq!(m.vocab_size, 11);
        assert_eq!(m.total_puzzles, Some(1000));
        assert_eq!(String::from_utf8(to_python_json(&m).unwrap()).unwrap(), OFFICIAL);
    }

    #[test]
    fn hrm_metadata_without_total_puzzles_and_null_ignore() {
        let text = r#"{"pad_id": 0, "ignore_label_id": null, "blank_identifier_id": 0, "vocab_size": 6, "seq_len": 900, "num_puzzle_identifiers": 1, "total_groups": 2, "mean_puzzle_examples": 1, "sets": ["all"]}"#;
        let m: DatasetMetadata = serde_json::from_str(text).unwrap();
        assert_eq!(m.total_puzzles, None);
        assert_eq!(m.ignore_label_id, None);
        assert_eq!(m.mean_puzzle_examples, 1.0);
    }
}
