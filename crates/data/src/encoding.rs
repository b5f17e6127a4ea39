//! Tokenising a corpus in one streaming pass: each new token gets a provisional number as it
//! is first seen, and the numbers are kept in memory or spooled to a file. The vocabulary is
//! then counted from the numbers of the training part alone, and the numbers are rewritten
//! as vocabulary ids, so the text is tokenised once however many passes follow.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::files::io_err;
use crate::token_store::{Column, TokenStore};
use crate::{DataError, Tokenizer, Vocab};

/// Ids per shard file of a prepared corpus (512 MiB of `u16` ids).
pub(crate) const SHARD_TOKENS: u64 = 1 << 28;

/// Numbers kept in memory, or written to a file as they come.
enum Spool<T> {
    Memory(Vec<T>),
    File { out: BufWriter<File>, path: PathBuf },
}

/// Numbers stored little-endian with a fixed width.
trait LittleEndian: Copy {
    const WIDTH: usize;
    fn write(self, out: &mut impl Write) -> std::io::Result<()>;
    fn read(bytes: &[u8]) -> Self;
}

impl LittleEndian for u32 {
    const WIDTH: usize = 4;
    fn write(self, out: &mut impl Write) -> std::io::Result<()> {
        out.write_all(&self.to_le_bytes())
    }
    fn read(bytes: &[u8]) -> Self {
        u32::from_le_bytes(bytes.try_into().expect("four bytes"))
    }
}

impl LittleEndian for u64 {
    const WIDTH: usize = 8;
    fn write(self, out: &mut impl Write) -> std::io::Result<()> {
        out.write_all(&self.to_le_bytes())
    }
    fn read(bytes: &[u8]) -> Self {
        u64::from_le_bytes(bytes.try_into().expect("eight bytes"))
    }
}

impl<T: LittleEndian> Spool<T> {
    fn file(path: PathBuf) -> Result<Self, DataError> {
        let file = File::create(&path).map_err(io_err(&path))?;
        Ok(Spool::File {
            out: BufWriter::with_capacity(1 << 20, file),
            path,
        })
    }

    fn push(&mut self, value: T) -> Result<(), DataError> {
        match self {
            Spool::Memory(values) => values.push(value),
            Spool::File { out, path } => value.write(out).map_err(io_err(path))?,
        }
        Ok(())
    }

    /// Calls `each` with the first `count` numbers, in order.
    fn for_each(&mut self, count: u64, mut each: impl FnMut(T)) -> Result<(), DataError> {
        match self {
            Spool::Memory(values) => values[..count as usize].iter().for_each(|&v| each(v)),
            Spool::File { out, path } => {
                out.flush().map_err(io_err(path))?;
                let file = File::open(&*path).map_err(io_err(path))?;
                let mut reader =
                    BufReader::with_capacity(1 << 20, file).take(count * T::WIDTH as u64);
                let mut chunk = vec![0u8; T::WIDTH << 16];
                loop {
                    let n = read_full(&mut reader, &mut chunk).map_err(io_err(path))?;
                    chunk[..n]
                        .chunks_exact(T::WIDTH)
                        .for_each(|b| each(T::read(b)));
                    if n < chunk.len() {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes out what is buffered and closes the file; the file's path, if any.
    fn finish(self) -> Result<Option<PathBuf>, DataError> {
        match self {
            Spool::Memory(_) => Ok(None),
            Spool::File { out, path } => {
                close(out, &path)?;
                Ok(Some(path))
            }
        }
    }
}

/// Reads until `buf` is full or the input ends; the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// A corpus being tokenised: records go in one at a time.
pub struct Encoder {
    tokenizer: Tokenizer,
    numbers: HashMap<String, u32>,
    tokens: Vec<String>,
    ids: Spool<u32>,
    starts: Spool<u64>,
    count: u64,
    records: usize,
}

impl Encoder {
    /// An encoder that keeps everything in memory.
    pub fn in_memory(tokenizer: Tokenizer) -> Self {
        Self::with(tokenizer, Spool::Memory(Vec::new()), Spool::Memory(vec![0]))
    }

    /// An encoder that spools the provisional numbers into `dir` and writes the record index
    /// straight to `index` (both files flat in memory).
    pub(crate) fn spooled(
        tokenizer: Tokenizer,
        dir: &Path,
        index: &Path,
    ) -> Result<Self, DataError> {
        let mut starts = Spool::file(index.to_owned())?;
        starts.push(0)?;
        Ok(Self::with(
            tokenizer,
            Spool::file(dir.join("first-seen.tmp"))?,
            starts,
        ))
    }

    fn with(tokenizer: Tokenizer, ids: Spool<u32>, starts: Spool<u64>) -> Self {
        Self {
            tokenizer,
            numbers: HashMap::new(),
            tokens: Vec::new(),
            ids,
            starts,
            count: 0,
            records: 0,
        }
    }

    /// Appends one record's tokens.
    pub fn push(&mut self, text: &str) -> Result<(), DataError> {
        for token in self.tokenizer.tokens(text) {
            let number = match self.numbers.get(&token) {
                Some(&n) => n,
                None => {
                    let n = self.tokens.len() as u32;
                    self.numbers.insert(token.clone(), n);
                    self.tokens.push(token);
                    n
                }
            };
            self.ids.push(number)?;
            self.count += 1;
        }
        self.records += 1;
        self.starts.push(self.count)
    }

    /// Tokens so far.
    pub fn tokens(&self) -> u64 {
        self.count
    }

    /// Records so far.
    pub fn records(&self) -> usize {
        self.records
    }

    /// The token position where record `i` starts (the end of the tokens when `i` is the
    /// number of records).
    pub fn record_start(&mut self, i: usize) -> Result<u64, DataError> {
        let mut start = 0;
        self.starts.for_each(i as u64 + 1, |s| start = s)?;
        Ok(start)
    }

    /// How often each distinct token occurs among the first `tokens` tokens.
    pub fn counts(&mut self, tokens: u64) -> Result<Vec<(&str, u64)>, DataError> {
        let mut counts = vec![0u64; self.tokens.len()];
        self.ids.for_each(tokens, |n| counts[n as usize] += 1)?;
        Ok(self.tokens.iter().map(String::as_str).zip(counts).collect())
    }

    /// The vocabulary of at most `max_size` entries the first `tokens` tokens build (the
    /// training part's: held-out words stay unknown).
    pub fn vocab(&mut self, tokens: u64, max_size: usize) -> Result<Vocab, DataError> {
        let counts = self.counts(tokens)?;
        Ok(Vocab::from_counts(
            counts.into_iter().filter(|&(_, n)| n > 0),
            max_size,
        ))
    }

    /// Each provisional number's id in `vocab`.
    fn ids_in(&self, vocab: &Vocab) -> Vec<u32> {
        self.tokens.iter().map(|t| vocab.id(t)).collect()
    }

    /// Every record as ids of `vocab`, in memory.
    pub fn into_store(mut self, vocab: &Vocab) -> Result<TokenStore, DataError> {
        let map = self.ids_in(vocab);
        let mut ids = Vec::with_capacity(self.count as usize);
        self.ids
            .for_each(self.count, |n| ids.push(map[n as usize]))?;
        let starts = match self.starts {
            Spool::Memory(starts) => starts,
            Spool::File { .. } => unreachable!("an in-memory encoder keeps its index in memory"),
        };
        Ok(TokenStore::in_memory(ids, starts))
    }

    /// Writes every record as ids of `vocab` into shard files in `dir`, `width` bytes an id;
    /// the shards' file names and token counts.
    pub(crate) fn write_shards(
        mut self,
        vocab: &Vocab,
        dir: &Path,
        width: usize,
    ) -> Result<Vec<(String, u64)>, DataError> {
        let map = self.ids_in(vocab);
        let mut shards: Vec<(String, u64)> = Vec::new();
        let mut out: Option<(BufWriter<File>, PathBuf)> = None;
        let mut failed = None;
        self.ids.for_each(self.count, |n| {
            if failed.is_some() {
                return;
            }
            let full = shards
                .last()
                .is_none_or(|(_, count)| *count == SHARD_TOKENS);
            if full {
                let name = format!("tokens-{:05}.bin", shards.len());
                let path = dir.join(&name);
                match File::create(&path) {
                    Ok(file) => {
                        if let Some((w, p)) =
                            out.replace((BufWriter::with_capacity(1 << 20, file), path))
                        {
                            failed = close(w, &p).err();
                        }
                        shards.push((name, 0));
                    }
                    Err(e) => {
                        failed = Some(io_err(&path)(e));
                        return;
                    }
                }
            }
            let (w, p) = out.as_mut().expect("a shard is open");
            let id = map[n as usize].to_le_bytes();
            if let Err(e) = w.write_all(&id[..width]) {
                failed = Some(io_err(p)(e));
            }
            shards.last_mut().expect("a shard is open").1 += 1;
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        if let Some((w, p)) = out {
            close(w, &p)?;
        }
        self.starts.finish()?;
        if let Some(spool) = self.ids.finish()? {
            std::fs::remove_file(&spool).map_err(io_err(&spool))?;
        }
        Ok(shards)
    }

    /// The tokens of positions `range` of the first-seen numbering, for tests.
    #[cfg(test)]
    fn first_seen(&mut self, range: std::ops::Range<u64>) -> Vec<String> {
        let mut all = Vec::new();
        self.ids.for_each(range.end, |n| all.push(n)).unwrap();
        all[range.start as usize..]
            .iter()
            .map(|&n| self.tokens[n as usize].clone())
            .collect()
    }
}

/// Flushes and syncs a written file.
fn close(out: BufWriter<File>, path: &Path) -> Result<(), DataError> {
    let file = out.into_inner().map_err(|e| io_err(path)(e.into_error()))?;
    file.sync_all().map_err(io_err(path))?;
    forget_cached_pages(&file);
    Ok(())
}

/// Drops a written file's pages from the page cache. Pages cached while writing come in large
/// blocks, and a memory map of the file would count each whole block in the reader's resident
/// set when it reads one record; read back from disk, they come one page at a time.
fn forget_cached_pages(file: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor; the call is advice only and changes no data.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// Maps the shard files written by [`Encoder::write_shards`].
pub(crate) fn map_shards(
    dir: &Path,
    shards: &[(String, u64)],
    width: usize,
) -> Result<Vec<(u64, Column)>, DataError> {
    let mut first = 0;
    shards
        .iter()
        .map(|(name, count)| {
            let path = dir.join(name);
            let column = Column::map(&path, width)?;
            if column.len() as u64 != *count {
                return Err(DataError::Format {
                    path,
                    detail: format!("holds {} ids, the manifest says {count}", column.len()),
                });
            }
            let shard = (first, column);
            first += count;
            Ok(shard)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spooled_and_in_memory_encoders_agree() {
        let dir = std::env::temp_dir().join(format!("encoder-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let records = ["Salt, pepper and salt.", "Pepper!", "oil and salt"];
        let mut memory = Encoder::in_memory(Tokenizer::Word);
        let mut spooled =
            Encoder::spooled(Tokenizer::Word, &dir, &dir.join("records.bin")).unwrap();
        for r in records {
            memory.push(r).unwrap();
            spooled.push(r).unwrap();
        }
        assert_eq!(memory.first_seen(6..8), ["pepper", "!"]);
        assert_eq!(spooled.first_seen(6..8), ["pepper", "!"]);
        // The vocabulary counts the first two records only.
        let vocab = memory.vocab(8, 100).unwrap();
        assert_eq!(vocab, spooled.vocab(8, 100).unwrap());
        assert!(!vocab.contains("oil"));
        let store = memory.into_store(&vocab).unwrap();
        let shards = spooled.write_shards(&vocab, &dir, 2).unwrap();
        let starts = Column::map(&dir.join("records.bin"), 8).unwrap();
        let mapped = TokenStore::new(map_shards(&dir, &shards, 2).unwrap(), starts);
        assert_eq!((mapped.records(), mapped.tokens()), (3, 11));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        store.read(0..11, &mut a);
        mapped.read(0..11, &mut b);
        assert_eq!(a, b);
        assert_eq!(mapped.record(2), 8..11);
        assert_eq!(a[8], vocab.id("[UNK]"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
