//! The index file format: the one reader and the one writer every index kind, the Python
//! package, the store and the scale-out path use.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! magic    8 bytes  b"KNNKITIX"
//! version  u32      format version (1)
//! hlen     u32      length of the header
//! hcrc     u32      CRC-32 of the header
//! header   hlen bytes of UTF-8 JSON: an object with the index's kind, parameters and counts,
//!          and `sections`: [{name, dtype, shape, offset, length, crc32}, ...]
//! sections each at a 64-byte aligned offset, so a mapped file serves them without a copy
//! ```
//!
//! Invariants checked by [`IndexFile::open`] before anything is handed out: the magic and
//! version, the header's length and checksum, that the header is a JSON object with a section
//! table, and for every section a known dtype, a shape whose byte size (computed without
//! overflow) equals its length, an aligned offset, a range inside the file, a unique name and
//! a matching CRC-32. What the sections *mean* (ids unique, links in range, values finite) is
//! checked by each index kind's `from_parts`.
//!
//! A load opens the file once: with `mmap` it maps that one open file and validates the
//! mapping, so a save that renames a new file over the path meanwhile cannot mix two versions
//! (the mapping keeps the old inode); without `mmap` it reads the bytes once.
//!
//! [`write`] is atomic: a uniquely named temporary file in the same directory (two concurrent
//! saves never share it), written, `fsync`ed, renamed over the path, then the directory is
//! `fsync`ed so the rename itself survives a power cut. An interrupted save leaves the old file
//! intact; a temporary file left by a killed writer is removed by the next save of that path.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::store::{MappedFile, Store};

/// First bytes of every index file.
pub const MAGIC: &[u8; 8] = b"KNNKITIX";
/// The format version this build reads and writes.
pub const VERSION: u32 = 1;
/// Sections start at multiples of this many bytes.
pub const ALIGN: usize = 64;
/// Largest header accepted (the header holds scalars and the section table only).
pub const MAX_HEADER: usize = 1 << 20;
const PREFIX: usize = 20;

/// Element types a section may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F64,
    I64,
    U8,
    U32,
    U64,
}

impl Dtype {
    /// Every dtype, in the order of [`Dtype::name`].
    pub const ALL: [Dtype; 6] = [
        Dtype::F32,
        Dtype::F64,
        Dtype::I64,
        Dtype::U8,
        Dtype::U32,
        Dtype::U64,
    ];

    /// numpy's name for the type.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
            Dtype::I64 => "int64",
            Dtype::U8 => "uint8",
            Dtype::U32 => "uint32",
            Dtype::U64 => "uint64",
        }
    }

    /// The dtype with numpy's name `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::U8 => 1,
            Dtype::F32 | Dtype::U32 => 4,
            Dtype::F64 | Dtype::I64 | Dtype::U64 => 8,
        }
    }
}

/// A Rust type stored in sections.
pub trait Element: bytemuck::Pod {
    const DTYPE: Dtype;
}

macro_rules! element {
    ($($t:ty => $d:ident),*) => {$(impl Element for $t { const DTYPE: Dtype = Dtype::$d; })*};
}
element!(f32 => F32, f64 => F64, i64 => I64, u8 => U8, u32 => U32, u64 => U64);

/// One validated entry of the section table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Byte offset in the file (a multiple of [`ALIGN`]).
    pub offset: usize,
    /// Byte length (the shape's product times the dtype's size).
    pub length: usize,
}

impl Section {
    /// Number of elements.
    pub fn count(&self) -> usize {
        self.length / self.dtype.size()
    }
}

enum Bytes {
    Mapped(Arc<MappedFile>),
    Owned(Vec<u8>),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m.bytes(),
            Bytes::Owned(v) => v,
        }
    }
}

/// A validated index file, mapped or read into memory.
pub struct IndexFile {
    name: String,
    bytes: Bytes,
    header: Map<String, Value>,
    sections: Vec<Section>,
}

impl std::fmt::Debug for IndexFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexFile")
            .field("name", &self.name)
            .field("mapped", &self.is_mapped())
            .field("sections", &self.sections)
            .finish()
    }
}

fn corrupt(name: &str, what: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("{name}: {what}"))
}

impl IndexFile {
    /// Opens and validates the file at `path` (see the module comment); `mmap` maps it instead
    /// of reading it.
    pub fn open(path: &Path, mmap: bool) -> Result<Self> {
        let bytes = if mmap {
            Bytes::Mapped(MappedFile::open(path)?)
        } else {
            Bytes::Owned(fs::read(path).map_err(|e| Error::io(path, &e))?)
        };
        Self::parse(path.display().to_string(), bytes)
    }

    /// Validates a file's bytes already in memory (`name` labels errors).
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<Self> {
        Self::parse(name.to_string(), Bytes::Owned(bytes))
    }

    fn parse(name: String, bytes: Bytes) -> Result<Self> {
        let raw = bytes.as_slice();
        let size = raw.len();
        if size < PREFIX {
            return Err(corrupt(
                &name,
                format!("file too short to be a knnkit index ({size} bytes)"),
            ));
        }
        if &raw[..8] != MAGIC {
            return Err(corrupt(
                &name,
                format!("not a knnkit index file (magic {:?})", &raw[..8]),
            ));
        }
        let word = |at: usize| u32::from_le_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]);
        let (version, hlen, hcrc) = (word(8), word(12) as usize, word(16));
        if version != VERSION {
            return Err(corrupt(
                &name,
                format!("format version {version} is not supported (this knnkit reads {VERSION})"),
            ));
        }
        if hlen > MAX_HEADER.min(size - PREFIX) {
            return Err(corrupt(
                &name,
                format!("header length {hlen} exceeds the file"),
            ));
        }
        let hbytes = &raw[PREFIX..PREFIX + hlen];
        if crc32fast::hash(hbytes) != hcrc {
            return Err(corrupt(&name, "header checksum mismatch"));
        }
        let header: Value = serde_json::from_slice(hbytes)
            .map_err(|e| corrupt(&name, format!("header is not valid JSON ({e})")))?;
        let Value::Object(header) = header else {
            return Err(corrupt(&name, "header is not a JSON object"));
        };
        let Some(Value::Array(table)) = header.get("sections") else {
            return Err(corrupt(&name, "header has no section table"));
        };
        let mut sections: Vec<Section> = Vec::with_capacity(table.len());
        for entry in table {
            let s = section_entry(&name, entry, size)?;
            if sections.iter().any(|t| t.name == s.name) {
                return Err(corrupt(
                    &name,
                    format!("section {:?} appears twice", s.name),
                ));
            }
            let body = &raw[s.offset..s.offset + s.length];
            let want = entry.get("crc32").and_then(Value::as_u64);
            if want != Some(u64::from(crc32fast::hash(body))) {
                return Err(corrupt(
                    &name,
                    format!("checksum mismatch in section {:?}", s.name),
                ));
            }
            sections.push(s);
        }
        Ok(IndexFile {
            name,
            bytes,
            header,
            sections,
        })
    }

    /// The header (its `sections` entry included).
    pub fn header(&self) -> &Map<String, Value> {
        &self.header
    }

    /// The header as JSON text.
    pub fn header_json(&self) -> String {
        Value::Object(self.header.clone()).to_string()
    }

    /// The validated section table.
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// The file's name, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True when the sections are read from a file mapping.
    pub fn is_mapped(&self) -> bool {
        matches!(self.bytes, Bytes::Mapped(_))
    }

    /// The mapping the sections live in, when mapped.
    pub fn mapped_file(&self) -> Option<&Arc<MappedFile>> {
        match &self.bytes {
            Bytes::Mapped(m) => Some(m),
            Bytes::Owned(_) => None,
        }
    }

    /// The section called `name` (`Corrupt` when the file has none).
    pub fn section(&self, name: &str) -> Result<&Section> {
        self.sections
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| corrupt(&self.name, format!("section {name:?} is missing")))
    }

    /// The raw bytes of a section of this file.
    pub fn raw(&self, s: &Section) -> &[u8] {
        &self.bytes.as_slice()[s.offset..s.offset + s.length]
    }

    fn typed<T: Element>(&self, name: &str) -> Result<&Section> {
        let s = self.section(name)?;
        if s.dtype != T::DTYPE {
            return Err(corrupt(
                &self.name,
                format!(
                    "section {name:?} holds {}, expected {}",
                    s.dtype.name(),
                    T::DTYPE.name()
                ),
            ));
        }
        Ok(s)
    }

    /// A copy of section `name` as a vector of `T` (its dtype must be `T`'s).
    pub fn array<T: Element>(&self, name: &str) -> Result<Vec<T>> {
        let s = self.typed::<T>(name)?;
        let mut out: Vec<T> = Vec::new();
        out.try_reserve_exact(s.count())
            .map_err(|_| corrupt(&self.name, format!("section {name:?} is too large")))?;
        out.extend(
            self.raw(s)
                .chunks_exact(std::mem::size_of::<T>())
                .map(bytemuck::pod_read_unaligned::<T>),
        );
        Ok(out)
    }

    /// Section `name` as a [`Store`]: mapped from the file when it is mapped (no copy), else
    /// copied.
    pub fn store<T: Element>(&self, name: &str) -> Result<Store<T>> {
        let s = self.typed::<T>(name)?;
        match &self.bytes {
            Bytes::Mapped(m) => Store::map(m, s.offset, s.count()),
            Bytes::Owned(_) => self.array(name).map(Store::Owned),
        }
    }
}

fn section_entry(file: &str, entry: &Value, size: usize) -> Result<Section> {
    let bad = || corrupt(file, format!("malformed section entry {entry}"));
    let uint = |key: &str| -> Result<usize> {
        entry
            .get(key)
            .and_then(Value::as_u64)
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(bad)
    };
    let name = entry
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(bad)?
        .to_string();
    let dtype = entry
        .get("dtype")
        .and_then(Value::as_str)
        .and_then(Dtype::parse)
        .ok_or_else(|| corrupt(file, format!("section {name:?} has an invalid dtype")))?;
    let shape: Vec<usize> = entry
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(bad)?
        .iter()
        .map(|v| v.as_u64().and_then(|v| usize::try_from(v).ok()))
        .collect::<Option<_>>()
        .ok_or_else(|| corrupt(file, format!("section {name:?} has an invalid shape")))?;
    let (offset, length) = (uint("offset")?, uint("length")?);
    let expected = shape
        .iter()
        .try_fold(dtype.size(), |acc, &x| acc.checked_mul(x));
    let fits = offset
        .checked_add(length)
        .is_some_and(|end| end <= size && offset >= PREFIX);
    if expected != Some(length) || !offset.is_multiple_of(ALIGN) || !fits {
        return Err(corrupt(
            file,
            format!(
                "section {name:?} (offset {offset}, length {length}) does not fit the \
                 {size}-byte file or its shape {shape:?}"
            ),
        ));
    }
    Ok(Section {
        name,
        dtype,
        shape,
        offset,
        length,
    })
}

/// A section to write: `bytes` hold `shape`'s product of `dtype` values, C order.
#[derive(Clone, Debug)]
pub struct SectionData<'a> {
    pub name: &'a str,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: &'a [u8],
}

impl<'a> SectionData<'a> {
    /// A one-dimensional section holding `values`.
    pub fn of<T: Element>(name: &'a str, values: &'a [T]) -> Self {
        SectionData {
            name,
            dtype: T::DTYPE,
            shape: vec![values.len()],
            bytes: bytemuck::cast_slice(values),
        }
    }
}

fn align(x: usize) -> usize {
    x.div_ceil(ALIGN) * ALIGN
}

/// The complete file for `header` (a JSON object; its `sections` entry is replaced) and
/// `sections`.
pub fn encode(header: &Map<String, Value>, sections: &[SectionData<'_>]) -> Result<Vec<u8>> {
    let mut table = Vec::with_capacity(sections.len());
    for (i, s) in sections.iter().enumerate() {
        let want = s
            .shape
            .iter()
            .try_fold(s.dtype.size(), |acc, &x| acc.checked_mul(x));
        if want != Some(s.bytes.len()) {
            return Err(Error::param(
                "section",
                format!("{:?} of shape {:?} to hold {want:?} bytes", s.name, s.shape),
                s.bytes.len(),
            ));
        }
        if sections[..i].iter().any(|t| t.name == s.name) {
            return Err(Error::param("section", "unique names", s.name));
        }
        let mut e = Map::new();
        e.insert("name".into(), s.name.into());
        e.insert("dtype".into(), s.dtype.name().into());
        e.insert("shape".into(), s.shape.clone().into());
        e.insert("offset".into(), 0.into());
        e.insert("length".into(), s.bytes.len().into());
        e.insert("crc32".into(), crc32fast::hash(s.bytes).into());
        table.push(e);
    }
    // Offsets depend on the header's length, which depends on the offsets: iterate to a fixed
    // point (lengths only grow, so this ends).
    let mut header = header.clone();
    let hbytes = loop {
        header.insert(
            "sections".into(),
            Value::Array(table.iter().cloned().map(Value::Object).collect()),
        );
        let hbytes = serde_json::to_vec(&Value::Object(header.clone()))
            .map_err(|e| Error::param("header", "JSON-serialisable values", e))?;
        if hbytes.len() > MAX_HEADER {
            return Err(Error::param(
                "header",
                format!("at most {MAX_HEADER} bytes"),
                hbytes.len(),
            ));
        }
        let mut pos = align(PREFIX + hbytes.len());
        let mut moved = false;
        for (e, s) in table.iter_mut().zip(sections) {
            if e["offset"].as_u64() != Some(pos as u64) {
                e.insert("offset".into(), pos.into());
                moved = true;
            }
            pos = align(pos + s.bytes.len());
        }
        if !moved {
            break hbytes;
        }
    };
    let total = table
        .last()
        .zip(sections.last())
        .map_or(PREFIX + hbytes.len(), |(e, s)| {
            e["offset"].as_u64().unwrap_or(0) as usize + s.bytes.len()
        });
    let mut out = Vec::new();
    out.try_reserve_exact(total)
        .map_err(|_| Error::param("index", "a size that fits in memory", total))?;
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(hbytes.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&hbytes).to_le_bytes());
    out.extend_from_slice(&hbytes);
    for (e, s) in table.iter().zip(sections) {
        out.resize(e["offset"].as_u64().unwrap_or(0) as usize, 0);
        out.extend_from_slice(s.bytes);
    }
    Ok(out)
}

/// Writes `header` and `sections` to `path` atomically (see the module comment).
pub fn write(path: &Path, header: &Map<String, Value>, sections: &[SectionData<'_>]) -> Result<()> {
    let bytes = encode(header, sections)?;
    write_atomic(path, &bytes)
}

/// Replaces the file at `path` by `bytes` atomically and durably: a unique temporary file in
/// the same directory, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::param("path", "a file path", path.display()))?
        .to_string_lossy()
        .into_owned();
    remove_stale_temps(&dir, &file_name);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = dir.join(format!(
        ".{file_name}.{}.{}-{nanos}.knnkit-tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        // The rename is durable once the directory is: fsync it (not possible everywhere).
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(path, &e)
    })
}

/// Removes temporary files of saves of `file_name` whose writer process no longer exists (it
/// was killed mid-save).
fn remove_stale_temps(dir: &Path, file_name: &str) {
    let prefix = format!(".{file_name}.");
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(".knnkit-tmp"))
        else {
            continue;
        };
        let pid = rest.split('.').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !process_alive(pid)) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(target_os = "linux")]
fn process_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

#[cfg(not(target_os = "linux"))]
fn process_alive(_pid: u32) -> bool {
    true // cannot tell: keep the file
}

#[cfg(test)]
mod tests;
