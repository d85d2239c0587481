//! The on-disk spool: every batch is written (and synced) before its first
//! send and removed once acknowledged, so usage survives an ingest outage
//! and a crash of the client. A replayed batch keeps its session and
//! `batch_seq`, so the aggregator counts it once whether or not an earlier
//! attempt got through.

use std::io::Write;
use std::path::{Path, PathBuf};

use meter_proto::v1::ReportRequest;
use prost::Message;

/// A directory of pending batches, one file each.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

fn file_name(req: &ReportRequest) -> String {
    // Hex, fixed width: the names sort in (session, batch_seq) order.
    format!("{:016x}-{:016x}.batch", req.source_session, req.batch_seq)
}

impl Spool {
    /// Opens (creating) the spool directory.
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Spool { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes a batch durably: to a temporary file, synced, then renamed.
    pub fn put(&self, req: &ReportRequest) -> std::io::Result<()> {
        let name = file_name(req);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&req.encode_to_vec())?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.dir.join(&name))?;
        std::fs::File::open(&self.dir)?.sync_all()
    }

    /// Removes an acknowledged batch.
    pub fn remove(&self, req: &ReportRequest) -> std::io::Result<()> {
        match std::fs::remove_file(self.dir.join(file_name(req))) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every pending batch of `source_id`, oldest session and batch first.
    /// Unreadable files (a crash mid-write leaves only `.tmp` files, which
    /// are skipped) are reported and kept for inspection.
    pub fn load(&self, source_id: &str) -> std::io::Result<Vec<ReportRequest>> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "batch"))
            .collect();
        names.sort();
        let mut out = Vec::new();
        for path in names {
            match ReportRequest::decode(std::fs::read(&path)?.as_slice()) {
                Ok(req) if req.source_id == source_id => out.push(req),
                Ok(_) => {}
                Err(e) => tracing::warn!(file = %path.display(), error = %e, "client.spool_file_unreadable"),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_come_back_in_order_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let req = |session, seq| ReportRequest {
            source_id: "n".into(),
            source_session: session,
            batch_seq: seq,
            events: vec![],
        };
        for (session, seq) in [(2, 1), (1, 10), (1, 2)] {
            spool.put(&req(session, seq)).unwrap();
        }
        let order: Vec<(u64, u64)> = spool.load("n").unwrap().iter().map(|r| (r.source_session, r.batch_seq)).collect();
        assert_eq!(order, [(1, 2), (1, 10), (2, 1)]);
        spool.remove(&req(1, 10)).unwrap();
        spool.remove(&req(1, 10)).unwrap();
        assert_eq!(spool.load("n").unwrap().len(), 2);
        assert!(spool.load("other").unwrap().is_empty());
    }
}
