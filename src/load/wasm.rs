//! The browser bundle's size: every `.wasm` and `.js` file of the site's `pkg` directory, raw
//! and gzip-compressed (level 9, as a server would pre-compress it).

use super::{error, Better, Report, Result};
use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::Write as _;
use std::path::Path;

/// One file's sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSize {
    /// The file name.
    pub name: String,
    /// Bytes on disk.
    pub raw: u64,
    /// Bytes once gzip-compressed.
    pub gzip: u64,
}

impl FileSize {
    /// The figures as a report (`wasm-size`, case = the file name).
    pub fn report(&self) -> Report {
        let mut r = Report::new("wasm-size", self.name.clone(), "flack");
        r.metric("raw_kib", self.raw as f64 / 1024.0, "KiB", Better::Lower)
            .metric("gzip_kib", self.gzip as f64 / 1024.0, "KiB", Better::Lower);
        r
    }
}

/// The gzip-compressed size of some bytes.
pub fn gzip_len(bytes: &[u8]) -> u64 {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(bytes).expect("writing to memory");
    encoder.finish().expect("writing to memory").len() as u64
}

/// Sizes of the `.wasm` and `.js` files in `pkg`, by name.
pub fn wasm_size(pkg: &Path) -> Result<Vec<FileSize>> {
    let mut sizes = Vec::new();
    for entry in std::fs::read_dir(pkg).map_err(|e| error(format!("{}: {e}", pkg.display())))? {
        let path = entry?.path();
        let wanted = path
            .extension()
            .is_some_and(|ext| ext == "wasm" || ext == "js");
        if !wanted || !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path)?;
        sizes.push(FileSize {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            raw: bytes.len() as u64,
            gzip: gzip_len(&bytes),
        });
    }
    if sizes.is_empty() {
        return Err(error(format!(
            "no .wasm or .js file in {} (build the site first)",
            pkg.display()
        )));
    }
    sizes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(sizes)
}
