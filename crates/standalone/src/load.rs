//! Reading and compiling the manifests: one [`Loaded`] per reading.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gatehouse_api::manifest::{self, ManifestError};
use gatehouse_compiler::{Diagnostic, Inputs, ObjectRef, compile};
use gatehouse_table::Table;

/// One compilation of the manifests.
#[derive(Debug)]
pub struct Loaded {
    /// The table (version 0: the caller numbers the tables it applies).
    pub table: Table,
    /// Every object, with whether it is accepted.
    pub accepted: BTreeMap<ObjectRef, bool>,
    /// What the compiler said, and the objects left out for fields no type knows.
    pub diagnostics: Vec<Diagnostic>,
}

/// Why the manifests could not be compiled at all.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file or a directory below it could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The path read.
        path: PathBuf,
        /// Why not.
        #[source]
        source: std::io::Error,
    },
    /// Files that do not parse: nothing is compiled from a half-read folder.
    #[error("{}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Parse {
        /// Each error names the file, line and column.
        errors: Vec<ManifestError>,
    },
}

impl LoadError {
    /// Logs one line per problem.
    pub(crate) fn log(&self) {
        match self {
            LoadError::Read { .. } => tracing::error!("{self}"),
            LoadError::Parse { errors } => {
                for e in errors {
                    tracing::error!("{e}");
                }
            }
        }
    }
}

/// Reads and compiles the manifests at `path` (a file or a directory tree), for a
/// gateway with (`redis`) or without a Redis for `scope: Global` rate limits.
pub fn load(path: &Path, redis: bool) -> Result<Loaded, LoadError> {
    let mut parsed = manifest::read_path(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if !parsed.errors.is_empty() {
        return Err(LoadError::Parse {
            errors: std::mem::take(&mut parsed.errors),
        });
    }
    let docs = std::mem::take(&mut parsed.documents);
    let (mut inputs, mut diagnostics) = Inputs::from_documents(docs);
    inputs.redis = redis;
    let out = compile(&inputs);
    let mut accepted: BTreeMap<ObjectRef, bool> = out
        .statuses
        .iter()
        .map(|(o, s)| (o.clone(), s.accepted.status))
        .collect();
    // Objects left out for unknown fields are not accepted either.
    for d in &diagnostics {
        accepted.insert(d.object.clone(), false);
    }
    diagnostics.extend(out.diagnostics);
    Ok(Loaded {
        table: out.table,
        accepted,
        diagnostics,
    })
}
