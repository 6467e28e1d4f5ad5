//! The write-ahead log: what makes a write durable.
//!
//! Each batch the writer takes is one record here, appended and synced
//! (`fdatasync`) before any write in it is acknowledged. redb receives the
//! same changes afterwards, in the background, and is made durable now and
//! then by a checkpoint (one durable redb commit). The log is two files
//! written in turn: while one takes new records, the other's are being
//! checkpointed, and once that checkpoint is durable it may start over. At
//! start-up, whatever both files hold is applied to redb again, older first.
//!
//! A record holds *physical* changes (put these bytes under this key, remove
//! this key, remove this space's rows), not requests: each change is a blind
//! write, so applying a prefix of the log again to a store that already has
//! it ends in the same state. That makes replay safe whether or not the last
//! checkpoint got to empty the log.
//!
//! The file starts with a header, `MNEMOWAL` and an epoch (u64 LE), and
//! is written over in place: it is grown ahead of need with zeros, so
//! syncing a record does not also have to sync the file's new size, and
//! starting over rewrites only the header, with the next epoch. A record is
//! `[len: u32 LE][crc32: u32 LE][payload: len bytes]`, its checksum over
//! the epoch, the length and the payload, so records of an earlier epoch
//! left further on in the file never read as current. A record that is cut
//! short, fails its checksum or does not decode ends the log (a crash tore
//! it while it was being written, so it was never acknowledged). Starting
//! the log at start-up ([`Log::begin`]) always moves to a new epoch, so
//! what follows a torn record is never read as part of the log again.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write as _};
use std::path::Path;

use prost::Message;

/// File names of the log's two files inside the data directory.
pub(crate) const WAL_FILES: [&str; 2] = ["mnemo-0.wal", "mnemo-1.wal"];

/// Largest record accepted when reading: anything longer is a torn or
/// corrupt length, not a batch the writer could have produced.
const MAX_RECORD: usize = 1 << 30;

const MAGIC: &[u8; 8] = b"MNEMOWAL";
/// The file header: magic and epoch.
const FILE_HEADER: u64 = 16;
/// A record's header: length and checksum.
const HEADER: usize = 8;
/// The file is grown by this much of zeros at a time. Small: growing is
/// written and synced by the writer, so each step stalls the writes behind
/// it (4 MiB steps tripled the 99th percentile under load; 256 KiB cost
/// about a millisecond, once every ~200 batches).
const GROW: u64 = 256 << 10;

/// One committed batch, as its changes to the tables.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Record {
    #[prost(message, repeated, tag = "1")]
    pub(crate) changes: Vec<Change>,
}

/// One blind write to a table.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Change {
    #[prost(string, tag = "1")]
    pub(crate) space: String,
    #[prost(oneof = "Write", tags = "2, 3, 4, 5")]
    pub(crate) write: Option<Write>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum Write {
    /// Store these encoded memory bytes under the id.
    #[prost(message, tag = "2")]
    PutMemory(PutMemory),
    /// Store a tombstone for the id, written at this millisecond.
    #[prost(message, tag = "3")]
    PutTombstone(PutTombstone),
    /// Remove the id's memory row.
    #[prost(string, tag = "4")]
    RemoveMemory(String),
    /// Remove every row of the space.
    #[prost(message, tag = "5")]
    DropSpace(DropSpace),
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PutMemory {
    #[prost(string, tag = "1")]
    pub(crate) id: String,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) bytes: Vec<u8>,
}

/// Carries nothing: the change's space is what goes.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct DropSpace {}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PutTombstone {
    #[prost(string, tag = "1")]
    pub(crate) id: String,
    #[prost(uint64, tag = "2")]
    pub(crate) at_ms: u64,
}

/// Both files of the log.
pub(crate) struct Log {
    files: [Wal; 2],
    /// The file taking records.
    active: usize,
    /// The active file's epoch; the other file's is lower.
    epoch: u64,
}

impl Log {
    /// Opens (creating if needed) the log in `dir` and returns it with the
    /// whole records both files hold, oldest first. Nothing is changed on
    /// disk: the caller makes those records durable elsewhere, then calls
    /// [`Log::begin`], which starts both files over.
    pub(crate) fn open(dir: &Path) -> io::Result<(Log, Vec<Record>)> {
        let (a, a_records) = Wal::open(&dir.join(WAL_FILES[0]))?;
        let (b, b_records) = Wal::open(&dir.join(WAL_FILES[1]))?;
        let records = if a.epoch <= b.epoch {
            [a_records, b_records].concat()
        } else {
            [b_records, a_records].concat()
        };
        let log = Log {
            epoch: a.epoch.max(b.epoch),
            files: [a, b],
            active: 0,
        };
        Ok((log, records))
    }

    /// Starts both files over in new epochs, so nothing they held reads
    /// again; from here on records can be appended.
    ///
    /// The older file goes first: a crash between the two leaves the newer
    /// file, whose records are the latest changes and replay safely onto
    /// what redb holds. (Left alone, the older file's records would replay
    /// over newer changes the other file no longer has.)
    pub(crate) fn begin(&mut self) -> io::Result<()> {
        let older = self.retire_older()?;
        self.files[1 - older].reset(self.epoch + 2)?;
        self.epoch += 2;
        self.active = 1 - older;
        Ok(())
    }

    /// The first step of [`Log::begin`]: starts the older file over.
    /// Returns which file that was.
    fn retire_older(&mut self) -> io::Result<usize> {
        let older = usize::from(self.files[1].epoch < self.files[0].epoch);
        self.files[older].reset(self.epoch + 1)?;
        Ok(older)
    }

    /// Appends one record to the active file and waits until it is on disk.
    pub(crate) fn append(&mut self, record: &Record) -> io::Result<()> {
        self.files[self.active].append(record)
    }

    /// Bytes of records in the active file.
    pub(crate) fn len(&self) -> u64 {
        self.files[self.active].len()
    }

    /// Which file takes records.
    pub(crate) fn active(&self) -> usize {
        self.active
    }

    /// Moves to the other file, which starts over. Only once every record
    /// of that file is durable in redb.
    pub(crate) fn rotate(&mut self) -> io::Result<()> {
        let next = 1 - self.active;
        self.files[next].reset(self.epoch + 1)?;
        self.epoch += 1;
        self.active = next;
        Ok(())
    }
}

/// One file of the log, positioned after its last record.
struct Wal {
    file: File,
    epoch: u64,
    /// Where the next record goes.
    end: u64,
    /// How far the file is written (with zeros past `end`).
    allocated: u64,
    /// Reused for every record, so appending does not allocate.
    buf: Vec<u8>,
}

impl Wal {
    /// Opens (creating if needed) one file; returns it with its whole
    /// records. Appending needs a [`Wal::reset`] first.
    fn open(path: &Path) -> io::Result<(Wal, Vec<Record>)> {
        let created = !path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        if created {
            // The new directory entry must outlive a crash too.
            if let Some(dir) = path.parent() {
                File::open(dir)?.sync_all()?;
            }
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (epoch, records) = match bytes.get(..FILE_HEADER as usize) {
            Some(header) if &header[..8] == MAGIC => {
                let epoch = u64::from_le_bytes(header[8..].try_into().expect("8 bytes"));
                (epoch, read_records(epoch, &bytes[FILE_HEADER as usize..]))
            }
            _ if bytes.iter().all(|b| *b == 0) => (0, Vec::new()),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not a mnemo write-ahead log", path.display()),
                ));
            }
        };
        let wal = Wal {
            file,
            epoch,
            end: FILE_HEADER,
            allocated: bytes.len() as u64,
            buf: Vec::new(),
        };
        Ok((wal, records))
    }

    /// Appends one record and waits until it is on disk.
    fn append(&mut self, record: &Record) -> io::Result<()> {
        if record.encoded_len() > MAX_RECORD {
            // It would read back as a torn tail: refuse rather than lose it.
            return Err(io::Error::other(format!(
                "a record of {} bytes is over the log's limit of {MAX_RECORD}",
                record.encoded_len()
            )));
        }
        self.buf.clear();
        self.buf.extend_from_slice(&[0; HEADER]);
        record
            .encode(&mut self.buf)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let payload = (self.buf.len() - HEADER) as u32;
        self.buf[..4].copy_from_slice(&payload.to_le_bytes());
        let crc = checksum(self.epoch, &self.buf[..4], &self.buf[HEADER..]);
        self.buf[4..HEADER].copy_from_slice(&crc.to_le_bytes());
        let end = self.end + self.buf.len() as u64;
        if end > self.allocated {
            self.grow(end)?;
        }
        self.file.seek(SeekFrom::Start(self.end))?;
        self.file.write_all(&self.buf)?;
        self.file.sync_data()?;
        self.end = end;
        Ok(())
    }

    /// Bytes of records the file holds.
    fn len(&self) -> u64 {
        self.end - FILE_HEADER
    }

    /// Empties the file, once everything in it is durable in redb: `epoch`
    /// begins, and what the file holds past the header no longer reads as
    /// records.
    fn reset(&mut self, epoch: u64) -> io::Result<()> {
        self.epoch = epoch;
        let mut header = [0u8; FILE_HEADER as usize];
        header[..8].copy_from_slice(MAGIC);
        header[8..].copy_from_slice(&self.epoch.to_le_bytes());
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(&header)?;
        self.allocated = self.allocated.max(FILE_HEADER);
        self.file.sync_data()?;
        self.end = FILE_HEADER;
        Ok(())
    }

    /// Writes zeros up to at least `to` and syncs them (with the new size).
    fn grow(&mut self, to: u64) -> io::Result<()> {
        let target = to.div_ceil(GROW) * GROW;
        let zeros = vec![0u8; (target - self.allocated) as usize];
        self.file.seek(SeekFrom::Start(self.allocated))?;
        self.file.write_all(&zeros)?;
        self.file.sync_data()?;
        self.allocated = target;
        Ok(())
    }
}

fn checksum(epoch: u64, len: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&epoch.to_le_bytes());
    h.update(len);
    h.update(payload);
    h.finalize()
}

/// The whole records of `epoch` at the start of `bytes`. Reading stops at
/// the first record that is cut short, fails its checksum or does not
/// decode.
fn read_records(epoch: u64, bytes: &[u8]) -> Vec<Record> {
    let mut records = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + HEADER) {
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        if len == 0 || len > MAX_RECORD {
            break;
        }
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        if checksum(epoch, &header[..4], payload) != crc {
            break;
        }
        let Ok(record) = Record::decode(payload) else {
            break;
        };
        records.push(record);
        at += HEADER + len;
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: usize) -> Record {
        Record {
            changes: (0..n)
                .map(|i| Change {
                    space: format!("s{i}"),
                    write: Some(if i % 2 == 0 {
                        Write::PutMemory(PutMemory {
                            id: format!("m{i}"),
                            bytes: vec![i as u8; i * 7],
                        })
                    } else {
                        Write::PutTombstone(PutTombstone {
                            id: format!("m{i}"),
                            at_ms: i as u64,
                        })
                    }),
                })
                .collect(),
        }
    }

    /// The active file after appending `records` to a new log.
    fn written(records: &[Record]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, none) = Log::open(dir.path()).unwrap();
        assert!(none.is_empty());
        log.begin().unwrap();
        for r in records {
            log.append(r).unwrap();
        }
        std::fs::read(dir.path().join(WAL_FILES[log.active()])).unwrap()
    }

    /// A log whose first file holds `bytes`, opened.
    fn reopened(bytes: &[u8]) -> (tempfile::TempDir, Log, Vec<Record>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(WAL_FILES[0]), bytes).unwrap();
        let (log, records) = Log::open(dir.path()).unwrap();
        (dir, log, records)
    }

    #[test]
    fn a_torn_tail_replays_to_the_last_whole_record_at_every_cut() {
        let records = vec![record(1), record(3), record(5)];
        let full = written(&records);
        let (_, _, all) = reopened(&full);
        assert_eq!(all, records);
        let last_start = FILE_HEADER as usize
            + records[..2]
                .iter()
                .map(|r| HEADER + r.encoded_len())
                .sum::<usize>();
        let last_end = last_start + HEADER + records[2].encoded_len();
        let full = &full[..last_end + 64];
        for cut in last_start..last_end {
            // Cut short where the file ends, and cut short inside the zeros
            // the file was grown with.
            let mut zeroed = full.to_vec();
            zeroed[cut..last_end].fill(0);
            for torn in [&full[..cut], zeroed.as_slice()] {
                let (dir, log, read) = reopened(torn);
                assert_eq!(read, records[..2], "cut at byte {cut}");
                // Until the caller begins, what was read stays readable.
                drop(log);
                let (mut log, kept) = Log::open(dir.path()).unwrap();
                assert_eq!(kept, records[..2], "cut at byte {cut}");
                // Begun, the log starts over in a new epoch: nothing of
                // what was read reads again.
                log.begin().unwrap();
                log.append(&record(2)).unwrap();
                drop(log);
                let (_, again) = Log::open(dir.path()).unwrap();
                assert_eq!(again, vec![record(2)], "cut at byte {cut}");
            }
        }
    }

    #[test]
    fn a_flipped_bit_ends_the_log_there() {
        let full = written(&[record(2), record(4)]);
        let second = FILE_HEADER as usize + HEADER + record(2).encoded_len();
        for at in [second + 2, second + 5, second + HEADER + 3] {
            let mut bytes = full.clone();
            bytes[at] ^= 0x10;
            let (_, _, read) = reopened(&bytes);
            assert_eq!(read, vec![record(2)], "bit flipped at byte {at}");
        }
    }

    #[test]
    fn both_files_replay_in_epoch_order_and_old_epochs_never_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path()).unwrap();
        log.begin().unwrap();
        for n in [6, 6, 6] {
            log.append(&record(n)).unwrap();
        }
        log.rotate().unwrap();
        log.append(&record(2)).unwrap();
        // Back to the first file: shorter than what it overwrites, so the
        // old records' bytes follow the new one.
        log.rotate().unwrap();
        log.append(&record(1)).unwrap();
        assert_eq!(log.len(), (HEADER + record(1).encoded_len()) as u64);
        drop(log);
        let (_, records) = Log::open(dir.path()).unwrap();
        assert_eq!(records, vec![record(2), record(1)]);
    }

    #[test]
    fn a_crash_inside_begin_never_leaves_only_the_older_file() {
        // One rotation: the second file holds the newer records.
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path()).unwrap();
        log.begin().unwrap();
        log.append(&record(1)).unwrap();
        log.rotate().unwrap();
        log.append(&record(3)).unwrap();
        drop(log);
        for rotations_before in 0..2 {
            let (mut log, records) = Log::open(dir.path()).unwrap();
            assert_eq!(records.last(), Some(&record(3)), "{rotations_before}");
            // A crash after begin's first step: the newer records remain.
            log.retire_older().unwrap();
            drop(log);
            let (_, records) = Log::open(dir.path()).unwrap();
            assert_eq!(records, vec![record(3)]);
            // And with the files the other way round.
            let (mut log, _) = Log::open(dir.path()).unwrap();
            log.begin().unwrap();
            log.rotate().unwrap();
            log.append(&record(1)).unwrap();
            log.rotate().unwrap();
            log.append(&record(3)).unwrap();
        }
    }

    #[test]
    fn a_file_that_is_not_a_log_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(WAL_FILES[1]), b"something else entirely").unwrap();
        let err = Log::open(dir.path()).err().expect("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
