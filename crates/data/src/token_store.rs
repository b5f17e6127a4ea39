//! Every record's token ids, held in memory or read through a memory map of a prepared
//! corpus's shards: a corpus larger than memory is read only where a batch needs it.

use std::ops::Range;
use std::path::Path;

use memmap2::Mmap;

use crate::DataError;
use crate::files::io_err;

/// Little-endian unsigned numbers of one width, in memory or in a mapped file.
#[derive(Debug)]
pub(crate) enum Column {
    /// Token ids built in memory.
    Ids(Vec<u32>),
    /// Record offsets built in memory.
    Offsets(Vec<u64>),
    /// A mapped file of `width`-byte numbers.
    Mapped {
        /// The file's bytes.
        map: Mmap,
        /// Bytes per number: 2, 4 or 8.
        width: usize,
    },
}

impl Column {
    /// Maps `path`, a file of `width`-byte little-endian numbers.
    pub(crate) fn map(path: &Path, width: usize) -> Result<Self, DataError> {
        let file = std::fs::File::open(path).map_err(io_err(path))?;
        // SAFETY: the prepared directory's files are written once, renamed into place and
        // never modified afterwards; a file changed behind the map is the one hazard, as with
        // every memory-mapped dataset (nanoGPT's `np.memmap` included).
        let map = unsafe { Mmap::map(&file) }.map_err(io_err(path))?;
        // Batches read scattered records: without this the kernel maps the pages around
        // each one too, and the resident set would grow with the corpus.
        #[cfg(unix)]
        map.advise(memmap2::Advice::Random).map_err(io_err(path))?;
        if map.len() % width != 0 {
            return Err(DataError::Format {
                path: path.to_owned(),
                detail: format!(
                    "{} bytes is not a whole number of {width}-byte numbers",
                    map.len()
                ),
            });
        }
        Ok(Column::Mapped { map, width })
    }

    /// How many numbers it holds.
    pub(crate) fn len(&self) -> usize {
        match self {
            Column::Ids(ids) => ids.len(),
            Column::Offsets(offsets) => offsets.len(),
            Column::Mapped { map, width } => map.len() / width,
        }
    }

    /// Number `i`.
    pub(crate) fn get(&self, i: usize) -> u64 {
        match self {
            Column::Ids(ids) => u64::from(ids[i]),
            Column::Offsets(offsets) => offsets[i],
            Column::Mapped { map, width } => {
                let mut bytes = [0u8; 8];
                bytes[..*width].copy_from_slice(&map[i * width..(i + 1) * width]);
                u64::from_le_bytes(bytes)
            }
        }
    }

    /// Appends numbers `range` to `out` as token ids.
    fn extend_ids(&self, range: Range<usize>, out: &mut Vec<u32>) {
        match self {
            Column::Ids(ids) => out.extend_from_slice(&ids[range]),
            Column::Mapped { map, width: 2 } => out.extend(
                map[range.start * 2..range.end * 2]
                    .chunks_exact(2)
                    .map(|b| u32::from(u16::from_le_bytes([b[0], b[1]]))),
            ),
            Column::Mapped { map, width: 4 } => out.extend(
                map[range.start * 4..range.end * 4]
                    .chunks_exact(4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ),
            _ => out.extend(range.map(|i| self.get(i) as u32)),
        }
    }
}

/// The token ids of every record, one after another, and where each record starts.
#[derive(Debug)]
pub struct TokenStore {
    /// Consecutive runs of ids, each with the position of its first id.
    shards: Vec<(u64, Column)>,
    /// `records + 1` token positions: record `i` is `starts[i]..starts[i + 1]`.
    starts: Column,
}

impl TokenStore {
    /// A store over `shards` (each with its first token's position) and record starts.
    pub(crate) fn new(shards: Vec<(u64, Column)>, starts: Column) -> Self {
        Self { shards, starts }
    }

    /// A store held in memory.
    pub fn in_memory(ids: Vec<u32>, starts: Vec<u64>) -> Self {
        Self::new(vec![(0, Column::Ids(ids))], Column::Offsets(starts))
    }

    /// Number of records.
    pub fn records(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    /// Number of tokens.
    pub fn tokens(&self) -> u64 {
        match self.starts.len() {
            0 => 0,
            n => self.starts.get(n - 1),
        }
    }

    /// The token positions of record `i`.
    pub fn record(&self, i: usize) -> Range<u64> {
        self.starts.get(i)..self.starts.get(i + 1)
    }

    /// The token positions of records `range`.
    pub fn span(&self, range: Range<usize>) -> Range<u64> {
        self.starts.get(range.start)..self.starts.get(range.end)
    }

    /// Appends the ids at token positions `range` to `out`.
    pub fn read(&self, range: Range<u64>, out: &mut Vec<u32>) {
        let mut at = range.start;
        // The last shard starting at or before `at`.
        let mut shard = self.shards.partition_point(|(first, _)| *first <= at) - 1;
        while at < range.end {
            let (first, column) = &self.shards[shard];
            let end = range.end.min(first + column.len() as u64);
            column.extend_ids((at - first) as usize..(end - first) as usize, out);
            at = end;
            shard += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cross_shard_boundaries() {
        let starts = Column::Offsets(vec![0, 3, 7]);
        let shards = vec![
            (0, Column::Ids(vec![10, 11])),
            (2, Column::Ids(vec![12, 13, 14])),
            (5, Column::Ids(vec![15, 16])),
        ];
        let store = TokenStore::new(shards, starts);
        assert_eq!((store.records(), store.tokens()), (2, 7));
        let mut out = Vec::new();
        store.read(store.record(1), &mut out);
        assert_eq!(out, [13, 14, 15, 16]);
        out.clear();
        store.read(1..6, &mut out);
        assert_eq!(out, [11, 12, 13, 14, 15]);
    }
}
