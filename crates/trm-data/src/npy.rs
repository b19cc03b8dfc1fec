//! Reading and writing the `.npy` arrays of the official built-dataset layout.
//!
//! Reading: the header is parsed by `npyz` (after a few cheap guards that keep hostile
//! headers from reaching it), and the data of the large `[N, seq_len]` u8 arrays is
//! memory-mapped instead of copied, because ARC-1 with 1000 augmentations is gigabytes.
//! The small index arrays are read into memory, as the official loader does.
//!
//! Writing: the header is produced exactly as `numpy.save` does it (sorted dict keys,
//! spare space for growth, 64-byte alignment), so our files are byte-identical to the
//! official builders' files and diff cleanly against them.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::DataError;

/// The element types the layout uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NpyDtype {
    U8,
    I32,
    I64,
}

impl NpyDtype {
    fn descr(self) -> &'static str {
        match self {
            NpyDtype::U8 => "|u1",
            NpyDtype::I32 => "<i4",
            NpyDtype::I64 => "<i8",
        }
    }

    fn size(self) -> usize {
        match self {
            NpyDtype::U8 => 1,
            NpyDtype::I32 => 4,
            NpyDtype::I64 => 8,
        }
    }

    fn from_descr(descr: &str) -> Option<Self> {
        match descr {
            "|u1" | "<u1" | "=u1" => Some(NpyDtype::U8),
            "<i4" => Some(NpyDtype::I32),
            "<i8" => Some(NpyDtype::I64),
            _ => None,
        }
    }
}

/// Build the complete header (magic, version, length, dict, padding) that `numpy.save`
/// writes for a C-ordered array.
pub fn numpy_header(dtype: NpyDtype, shape: &[usize]) -> Vec<u8> {
    // repr() of a Python tuple: "(5,)" for one element.
    let shape_repr = match shape {
        [one] => format!("({one},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut dict = format!("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}", dtype.descr(), shape_repr);
    // NumPy leaves room to rewrite the first dimension in place (GROWTH_AXIS_MAX_DIGITS).
    if let Some(first) = shape.first() {
        let digits = first.to_string().len();
        dict.push_str(&" ".repeat(21usize.saturating_sub(digits)));
    }
    let mut version: u8 = 1;
    let mut prefix_len = 10; // magic 6 + version 2 + u16 length
    let hlen = dict.len() + 1;
    let mut padlen = 64 - ((prefix_len + hlen) % 64);
    if hlen + padlen > u16::MAX as usize {
        version = 2;
        prefix_len = 12;
        padlen = 64 - ((prefix_len + hlen) % 64);
    }
    let mut out = Vec::with_capacity(prefix_len + hlen + padlen);
    out.extend_from_slice(b"\x93NUMPY");
    out.push(version);
    out.push(0);
    if version == 1 {
        out.extend_from_slice(&((hlen + padlen) as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&((hlen + padlen) as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', padlen));
    out.push(b'\n');
    out
}

fn create(path: &Path) -> Result<BufWriter<File>, DataError> {
    let f = File::create(path).map_err(|e| DataError::io(path, e))?;
    Ok(BufWriter::with_capacity(1 << 20, f))
}

/// Write a 1-D int32 array.
pub fn write_i32(path: &Path, values: &[i32]) -> Result<(), DataError> {
    let mut w = create(path)?;
    let mut buf = numpy_header(NpyDtype::I32, &[values.len()]);
    buf.reserve(values.len() * 4);
    for v in values {
        buf.extend_from_slice(&v.to_le_bytes());
    }
    w.write_all(&buf).map_err(|e| DataError::io(path, e))?;
    w.flush().map_err(|e| DataError::io(path, e))
}

/// Streams the rows of a `[rows, cols]` u8 array to disk, so builders never hold a whole
/// split in memory. The row count is fixed up front because the header comes first.
pub struct U8MatrixWriter {
    path: PathBuf,
    w: BufWriter<File>,
    rows: usize,
    cols: usize,
    written: usize,
}

impl U8MatrixWriter {
    pub fn create(path: &Path, rows: usize, cols: usize) -> Result<Self, DataError> {
        if cols == 0 {
            return Err(DataError::npy(path, "internal: rows of length 0"));
        }
        let mut w = create(path)?;
        w.write_all(&numpy_header(NpyDtype::U8, &[rows, cols])).map_err(|e| DataError::io(path, e))?;
        Ok(U8MatrixWriter { path: path.to_owned(), w, rows, cols, written: 0 })
    }

    /// Append whole rows (`data.len()` must be a multiple of `cols`).
    pub fn write_rows(&mut self, data: &[u8]) -> Result<(), DataError> {
        if !data.len().is_multiple_of(self.cols) || self.written + data.len() / self.cols > self.rows {
            return Err(DataError::npy(
                &self.path,
                format!(
                    "internal: writing {} bytes after {} of {} rows of {}",
                    data.len(),
                    self.written,
                    self.rows,
                    self.cols
                ),
            ));
        }
        self.written += data.len() / self.cols;
        self.w.write_all(data).map_err(|e| DataError::io(&self.path, e))
    }

    pub fn finish(mut self) -> Result<(), DataError> {
        if self.written != self.rows {
            return Err(DataError::npy(
                &self.path,
                format!("internal: wrote {} rows, header says {}", self.written, self.rows),
            ));
        }
        self.w.flush().map_err(|e| DataError::io(&self.path, e))
    }
}

/// Write a whole `[rows, cols]` u8 array.
pub fn write_u8_matrix(path: &Path, data: &[u8], cols: usize) -> Result<(), DataError> {
    let rows = data.len().checked_div(cols).unwrap_or(0);
    let mut w = U8MatrixWriter::create(path, rows, cols)?;
    w.write_rows(data)?;
    w.finish()
}

/// A parsed header and where the data starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyInfo {
    pub dtype: NpyDtype,
    pub shape: Vec<usize>,
    pub data_offset: usize,
}

/// Parse and check the header of an in-memory `.npy` file: known dtype, C order, and a data
/// section of exactly the size the shape implies. `path` is only used in messages.
pub fn parse_header(path: &Path, bytes: &[u8]) -> Result<NpyInfo, DataError> {
    let bad = |msg: String| DataError::npy(path, msg);
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file (missing \\x93NUMPY magic)".into()));
    }
    let (header_len, prefix) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(bad(format!("unsupported .npy format version {v}"))),
    };
    let data_offset = prefix + header_len;
    if data_offset > bytes.len() {
        return Err(bad(format!("truncated header: needs {data_offset} bytes, file has {}", bytes.len())));
    }
    // npyz multiplies the shape without overflow checks; refuse absurd shapes first.
    check_shape_product(&bytes[prefix..data_offset]).map_err(bad)?;
    let mut reader = &bytes[..data_offset];
    let header = npyz::NpyHeader::from_reader(&mut reader).map_err(|e| bad(format!("bad .npy header: {e}")))?;
    let descr = match header.dtype() {
        npyz::DType::Plain(ts) => ts.to_string(),
        other => other.descr(),
    };
    let dtype = NpyDtype::from_descr(&descr)
        .ok_or_else(|| bad(format!("unsupported dtype {descr} (expected uint8 '|u1', int32 '<i4' or int64 '<i8')")))?;
    let shape: Vec<usize> = header.shape().iter().map(|&d| d as usize).collect();
    if header.order() == npyz::Order::Fortran && shape.iter().filter(|&&d| d > 1).count() > 1 {
        return Err(bad("Fortran-ordered arrays are not supported".into()));
    }
    let expected = shape
        .iter()
        .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(format!("shape {shape:?} is too large")))?;
    let actual = bytes.len() - data_offset;
    if actual < expected {
        return Err(bad(format!(
            "truncated: shape {shape:?} of {descr} needs {expected} data bytes, file has {actual}"
        )));
    }
    if actual > expected {
        return Err(bad(format!("{} unexpected bytes after the data of shape {shape:?}", actual - expected)));
    }
    Ok(NpyInfo { dtype, shape, data_offset })
}

/// Reject a header whose shape integers multiply past u64 (scans the digits after 'shape').
fn check_shape_product(header: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(header);
    let Some(start) = text.find("shape") else {
        return Ok(());
    };
    let rest = &text[start..];
    let end = rest.find([')', ']']).unwrap_or(rest.len());
    let mut product: u128 = 1;
    for digits in rest[..end].split(|c: char| !c.is_ascii_digit()) {
        if digits.is_empty() {
            continue;
        }
        let d: u128 = digits.parse().map_err(|_| format!("shape dimension {digits} is too large"))?;
        product = product
            .checked_mul(d)
            .filter(|p| *p <= u64::MAX as u128)
            .ok_or_else(|| "shape is too large".to_string())?;
    }
    Ok(())
}

fn open_file(path: &Path) -> Result<File, DataError> {
    File::open(path).map_err(|e| DataError::io(path, e))
}

/// A read-only memory map of a whole file.
fn map_file(path: &Path) -> Result<Mmap, DataError> {
    let f = open_file(path)?;
    let len = f.metadata().map_err(|e| DataError::io(path, e))?.len();
    if len < 10 {
        return Err(DataError::npy(path, format!("truncated: {len} bytes, too short for a .npy header")));
    }
    // SAFETY: the map is read-only and private to this process. The built datasets are
    // write-once files; if another process truncated one while we hold the map, reads could
    // fault. That is the same contract as NumPy's `mmap_mode="r"` which the official loader
    // uses, and the only way to avoid holding multi-gigabyte splits in memory.
    #[allow(unsafe_code)]
    let map = unsafe { Mmap::map(&f) }.map_err(|e| DataError::io(path, e))?;
    Ok(map)
}

enum Storage {
    Mapped { map: Mmap, offset: usize },
    Owned(Vec<u8>),
}

/// A `[rows, cols]` token array: memory-mapped when stored as uint8 (what our builders
/// and the official ARC and Maze builders write). The official Sudoku builder stores
/// augmented training splits as int64 (its digit map is an int64 array), so int32/int64
/// files are accepted too and narrowed to bytes in memory, each value checked.
pub struct U8Matrix {
    storage: Storage,
    rows: usize,
    cols: usize,
}

impl std::fmt::Debug for U8Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "U8Matrix[{}, {}]", self.rows, self.cols)
    }
}

impl U8Matrix {
    /// Open `path`, which must hold a 2-D uint8 (or int32/int64) array.
    pub fn open(path: &Path) -> Result<Self, DataError> {
        let map = map_file(path)?;
        let info = parse_header(path, &map)?;
        let [rows, cols] = info.shape[..] else {
            return Err(DataError::npy(
                path,
                format!("wrong shape {:?}: expected 2-D [examples, seq_len]", info.shape),
            ));
        };
        let offset = info.data_offset;
        let storage = match info.dtype {
            NpyDtype::U8 => Storage::Mapped { map, offset },
            wide => {
                let size = wide.size();
                let mut out = Vec::with_capacity(rows * cols);
                for (k, c) in map[offset..].chunks_exact(size).enumerate() {
                    let mut b = [0u8; 8];
                    b[..size].copy_from_slice(c);
                    let v = if size == 4 {
                        i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64
                    } else {
                        i64::from_le_bytes(b)
                    };
                    let t = u8::try_from(v).map_err(|_| {
                        DataError::npy(
                            path,
                            format!(
                                "value {v} at example {}, position {} does not fit a uint8 token",
                                k / cols.max(1),
                                k % cols.max(1)
                            ),
                        )
                    })?;
                    out.push(t);
                }
                Storage::Owned(out)
            }
        };
        Ok(U8Matrix { storage, rows, cols })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// All data, row-major.
    pub fn data(&self) -> &[u8] {
        let n = self.rows * self.cols;
        match &self.storage {
            Storage::Mapped { map, offset } => &map[*offset..*offset + n],
            Storage::Owned(v) => &v[..n],
        }
    }

    /// Row `i`; panics if `i >= rows()` like slice indexing.
    pub fn row(&self, i: usize) -> &[u8] {
        &self.data()[i * self.cols..(i + 1) * self.cols]
    }
}

/// Read a 1-D integer array (int32 as written by the builders; int64 accepted) into memory.
pub fn read_index_array(path: &Path) -> Result<Vec<i64>, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let info = parse_header(path, &bytes)?;
    if info.shape.len() != 1 {
        return Err(DataError::npy(path, format!("wrong shape {:?}: expected a 1-D array", info.shape)));
    }
    let data = &bytes[info.data_offset..];
    match info.dtype {
        NpyDtype::I32 => {
            Ok(data.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect())
        }
        NpyDtype::I64 => Ok(data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect()),
        NpyDtype::U8 => Err(DataError::npy(path, "wrong dtype uint8: index arrays must be int32")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Bytes of `np.save(f, np.array([0, 1], dtype=np.int32))` with NumPy 2.4.6: the header
    // is 128 bytes because of NumPy's 21-digit growth space.
    #[test]
    fn header_matches_numpy_layout() {
        let h = numpy_header(NpyDtype::I32, &[2]);
        assert_eq!(h.len(), 128);
        assert_eq!(&h[..10], b"\x93NUMPY\x01\x00\x76\x00");
        let text = std::str::from_utf8(&h[10..]).unwrap();
        assert!(text.starts_with("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }"));
        assert!(text.ends_with(" \n"));
        let h2 = numpy_header(NpyDtype::U8, &[3, 81]);
        assert!(std::str::from_utf8(&h2[10..])
            .unwrap()
            .starts_with("{'descr': '|u1', 'fortran_order': False, 'shape': (3, 81), }"));
        assert_eq!(h2.len() % 64, 0);
    }

    #[test]
    fn parse_round_trip_and_errors() {
        let p = Path::new("x.npy");
        let mut f = numpy_header(NpyDtype::U8, &[2, 3]);
        f.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
        let info = parse_header(p, &f).unwrap();
        assert_eq!(info.shape, vec![2, 3]);
        assert_eq!(info.dtype, NpyDtype::U8);
        let err = parse_header(p, &f[..f.len() - 1]).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        let mut g = f.clone();
        g.push(0);
        assert!(parse_header(p, &g).unwrap_err().to_string().contains("unexpected bytes"));
        assert!(parse_header(p, b"hello world").is_err());
        let mut h = numpy_header(NpyDtype::U8, &[2, 3]);
        let i = h.windows(3).position(|w| w == b"|u1").unwrap();
        h[i..i + 3].copy_from_slice(b"<f4");
        h.extend_from_slice(&[0; 24]);
        let err = parse_header(p, &h).unwrap_err().to_string();
        assert!(err.contains("unsupported dtype <f4"), "{err}");
    }

    #[test]
    fn huge_shape_is_an_error_not_a_panic() {
        let mut h = numpy_header(NpyDtype::U8, &[2, 3]);
        let text = b"{'descr': '|u1', 'fortran_order': False, 'shape': (99999999999, 99999999999), }";
        h.truncate(10);
        h.extend_from_slice(text);
        h[8] = text.len() as u8;
        assert!(parse_header(Path::new("x"), &h).is_err());
    }
}
