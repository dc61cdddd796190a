//! `Store<T>`: an array that lives either in memory or in a read-only file mapping.
//!
//! A loaded index can map its large arrays straight from the file (`mmap`): processes serving
//! the same file then share one copy through the page cache, and loading costs no copy. The
//! first write turns a mapped array into an owned copy (copy-on-write), so an index loaded this
//! way stays fully usable.
//!
//! A mapping is validated when it is made: the range must lie inside the file and be aligned
//! for `T` (index files align sections to 64 bytes). Files are replaced by atomic rename when
//! saved, so a mapped file is never rewritten in place.

use std::ops::Deref;
use std::sync::Arc;

use crate::error::{Error, Result};

/// A read-only memory-mapped file.
pub struct MappedFile(memmap2::Mmap, crate::sigbus::Guard);

impl MappedFile {
    /// Maps `path` read-only.
    pub fn open(path: &std::path::Path) -> Result<Arc<Self>> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, &e))?;
        // SAFETY: the mapping is read-only; knnkit never writes index files in place (saves go
        // to a temporary file renamed over the old one), so the mapped bytes do not change.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| Error::Corrupt(format!("cannot map {}: {e}", path.display())))?;
        let guard = crate::sigbus::Guard::register(map.as_ptr() as usize, map.len());
        Ok(Arc::new(MappedFile(map, guard)))
    }

    /// `Corrupt` when the file was truncated under the mapping since it was opened (a read
    /// past its new end found a zero page instead of killing the process).
    pub fn check(&self) -> Result<()> {
        if self.1.damaged() {
            return Err(Error::Corrupt(
                "the mapped index file was truncated or rewritten in place by another program \
                 while in use; results read from it are not valid: load it again"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// An array in memory or in a mapped file.
pub enum Store<T> {
    Owned(Vec<T>),
    Mapped {
        file: Arc<MappedFile>,
        offset: usize,
        len: usize,
    },
}

impl<T> Default for Store<T> {
    fn default() -> Self {
        Store::Owned(Vec::new())
    }
}

impl<T: bytemuck::Pod> Store<T> {
    /// `len` values of `T` at byte `offset` of `file`, checked to fit and to be aligned.
    pub fn map(file: &Arc<MappedFile>, offset: usize, len: usize) -> Result<Self> {
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .and_then(|b| b.checked_add(offset))
            .filter(|&end| end <= file.0.len())
            .ok_or_else(|| Error::Corrupt(format!("section at {offset} exceeds the file")))?;
        let _ = bytes;
        let store = Store::Mapped {
            file: file.clone(),
            offset,
            len,
        };
        if len > 0 {
            let start = file.0[offset..].as_ptr() as usize;
            if !start.is_multiple_of(std::mem::align_of::<T>()) {
                return Err(Error::Corrupt(format!("section at {offset} is misaligned")));
            }
        }
        Ok(store)
    }

    /// The owned vector, copying a mapped array first (copy-on-write).
    pub fn to_mut(&mut self) -> &mut Vec<T> {
        if let Store::Mapped { .. } = self {
            *self = Store::Owned(self.to_vec());
        }
        match self {
            Store::Owned(v) => v,
            Store::Mapped { .. } => unreachable!("converted above"),
        }
    }

    /// An owned array moved into an allocation advised for huge pages (random reads over a
    /// large array miss the TLB less); a mapped one is returned as is.
    pub fn into_huge(self) -> Self {
        match self {
            Store::Owned(v) => {
                let mut out = Vec::new();
                crate::mem::reserve_huge(&mut out, v.len());
                out.extend_from_slice(&v);
                Store::Owned(out)
            }
            mapped => mapped,
        }
    }

    /// Bytes held in process memory (0 for a mapped array: the page cache holds it, shared).
    pub fn heap_bytes(&self) -> usize {
        match self {
            Store::Owned(v) => v.capacity() * std::mem::size_of::<T>(),
            Store::Mapped { .. } => 0,
        }
    }

    /// `Corrupt` when the array is mapped from a file that was truncated under it.
    pub fn check(&self) -> Result<()> {
        match self {
            Store::Mapped { file, .. } => file.check(),
            Store::Owned(_) => Ok(()),
        }
    }

    /// True when the array is read from a file mapping.
    pub fn is_mapped(&self) -> bool {
        matches!(self, Store::Mapped { .. })
    }
}

impl<T: bytemuck::Pod> Deref for Store<T> {
    type Target = [T];

    #[inline(always)]
    fn deref(&self) -> &[T] {
        match self {
            Store::Owned(v) => v,
            Store::Mapped { file, offset, len } => {
                let bytes = &file.0[*offset..*offset + len * std::mem::size_of::<T>()];
                // Size and alignment were checked in `map`.
                bytemuck::cast_slice(bytes)
            }
        }
    }
}

impl<T: bytemuck::Pod> Clone for Store<T> {
    fn clone(&self) -> Self {
        match self {
            Store::Owned(v) => Store::Owned(v.clone()),
            Store::Mapped { file, offset, len } => Store::Mapped {
                file: file.clone(),
                offset: *offset,
                len: *len,
            },
        }
    }
}

impl<T: bytemuck::Pod + std::fmt::Debug> std::fmt::Debug for Store<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.is_mapped() { "mapped" } else { "owned" };
        write!(f, "Store({kind}, {} values)", self.len())
    }
}

impl<T: bytemuck::Pod> Store<T> {
    /// The values as an owned vector (moved out when owned, copied when mapped).
    pub fn into_vec(self) -> Vec<T> {
        match self {
            Store::Owned(v) => v,
            mapped => mapped.to_vec(),
        }
    }
}

impl<T> From<Vec<T>> for Store<T> {
    fn from(v: Vec<T>) -> Self {
        Store::Owned(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_checks_and_copies_on_write() {
        let dir = std::env::temp_dir().join(format!("knnkit-store-{}", std::process::id()));
        let mut bytes = vec![0u8; 64];
        bytes.extend([1.0f32, 2.0, 3.0].iter().flat_map(|v| v.to_le_bytes()));
        std::fs::write(&dir, &bytes).unwrap();
        let file = MappedFile::open(&dir).unwrap();
        let mut s: Store<f32> = Store::map(&file, 64, 3).unwrap();
        assert!(s.is_mapped() && s.heap_bytes() == 0);
        assert_eq!(&s[..], &[1.0, 2.0, 3.0]);
        assert!(Store::<f32>::map(&file, 64, 4).is_err(), "past the end");
        assert!(Store::<f32>::map(&file, 66, 1).is_err(), "misaligned");
        assert!(Store::<f32>::map(&file, usize::MAX, 2).is_err(), "overflow");
        s.to_mut().push(4.0);
        assert!(!s.is_mapped());
        assert_eq!(&s[..], &[1.0, 2.0, 3.0, 4.0]);
        std::fs::remove_file(&dir).unwrap();
    }
}
