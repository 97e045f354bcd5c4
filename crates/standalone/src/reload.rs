//! The rule of standalone mode: a reload never makes things worse.
//!
//! | the change | what happens |
//! |---|---|
//! | valid | applied, with the next version |
//! | a file that does not parse | refused; the last good table keeps serving |
//! | an object that was served and now is invalid | refused; the last good table keeps serving |
//! | a new invalid object, or an unsupported field | reported; everything else applies |
//!
//! [`judge`] is the rule alone; [`Folder::reload`] reads, compiles, judges and applies.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gatehouse_compiler::{Diagnostic, ObjectRef, Reason, Severity};
use gatehouse_proxy::{AdminState, PrepareError};
use gatehouse_table::Table;

use crate::load::{LoadError, Loaded, load};

/// Whether a new compilation may replace the table that serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It may.
    Apply,
    /// It may not: these objects were served and are now invalid.
    Keep {
        /// The objects that regressed.
        regressed: Vec<ObjectRef>,
    },
}

/// The rule: `loaded` may replace the table unless an object accepted in the table that
/// serves (`served`) is now refused as invalid. Objects that were never accepted, and
/// objects refused for another reason (a reference to something missing), do not hold
/// the rest back.
pub fn judge(served: &BTreeMap<ObjectRef, bool>, loaded: &Loaded) -> Verdict {
    let regressed: Vec<ObjectRef> = loaded
        .accepted
        .iter()
        .filter(|(o, ok)| !**ok && served.get(*o) == Some(&true))
        .filter(|(o, _)| {
            loaded.diagnostics.iter().any(|d| {
                &d.object == *o && d.severity == Severity::Error && d.reason == Reason::Invalid
            })
        })
        .map(|(o, _)| o.clone())
        .collect();
    if regressed.is_empty() {
        Verdict::Apply
    } else {
        Verdict::Keep { regressed }
    }
}

/// Why standalone mode cannot start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The path does not exist or cannot be resolved.
    #[error("{}", path.display())]
    Path {
        /// The path as given.
        path: PathBuf,
        /// Why not.
        #[source]
        source: std::io::Error,
    },
    /// The manifests cannot be compiled (each problem is logged).
    #[error("the manifests in {} do not parse", path.display())]
    Load {
        /// The folder or file.
        path: PathBuf,
        /// Why not.
        #[source]
        source: LoadError,
    },
}

/// What one reload did.
#[derive(Debug)]
pub enum Reloaded {
    /// The new table serves.
    Applied {
        /// Its version.
        version: u64,
        /// Its routes.
        routes: usize,
    },
    /// The manifests could not be read; the last good table serves.
    Unreadable(LoadError),
    /// Objects that were served became invalid; the last good table serves.
    Regressed {
        /// Those objects.
        objects: Vec<ObjectRef>,
    },
    /// The proxy could not prepare the new table; the last good one serves.
    Refused(PrepareError),
}

/// The manifests being served: where they are, the version applied last, and what was
/// accepted in the table that serves.
#[derive(Debug)]
pub struct Folder {
    path: PathBuf,
    source: String,
    version: u64,
    accepted: BTreeMap<ObjectRef, bool>,
    /// Whether the gateway has a Redis (the compiler reports Global limits without it).
    redis: bool,
}

impl Folder {
    /// Reads and compiles the manifests at `path` for the first time: the folder, and
    /// the first table to serve (version 1). The diagnostics are logged; manifests that
    /// do not parse are an error (each problem is logged).
    pub fn open(path: &Path, redis: bool) -> Result<(Folder, Table), OpenError> {
        let path = path.canonicalize().map_err(|source| OpenError::Path {
            path: path.to_path_buf(),
            source,
        })?;
        let loaded = match load(&path, redis) {
            Ok(l) => l,
            Err(source) => {
                source.log();
                return Err(OpenError::Load { path, source });
            }
        };
        log_diagnostics(&loaded.diagnostics);
        let mut table = loaded.table;
        table.version = 1;
        let folder = Folder {
            source: format!("file:{}", path.display()),
            path,
            version: 1,
            accepted: loaded.accepted,
            redis,
        };
        Ok((folder, table))
    }

    /// The manifests' path, resolved.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the tables come from, as the admin listener's `/config` says
    /// (`file:PATH`).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The version of the last table handed to the proxy.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Reads and compiles the manifests again, and makes the result the table that
    /// serves through `admin` when the rule ([`judge`]) lets it. Logs what it did.
    pub fn reload(&mut self, admin: &AdminState) -> Reloaded {
        let loaded = match load(&self.path, self.redis) {
            Ok(l) => l,
            Err(e) => {
                e.log();
                tracing::error!("keeping the last good table: a manifest does not parse");
                return Reloaded::Unreadable(e);
            }
        };
        // An object that was served and now is invalid: keep what worked.
        if let Verdict::Keep { regressed } = judge(&self.accepted, &loaded) {
            let broken: Vec<Diagnostic> = loaded
                .diagnostics
                .iter()
                .filter(|d| regressed.contains(&d.object))
                .cloned()
                .collect();
            log_diagnostics(&broken);
            tracing::error!(
                objects = regressed.len(),
                "keeping the last good table: a served object became invalid"
            );
            return Reloaded::Regressed { objects: regressed };
        }
        log_diagnostics(&loaded.diagnostics);
        let mut table = loaded.table;
        self.version += 1;
        table.version = self.version;
        let routes = table.routes.len();
        match admin.shared().apply(table) {
            Ok(()) => {
                admin.applied(&self.source);
                self.accepted = loaded.accepted;
                tracing::info!(version = self.version, routes, "applied");
                Reloaded::Applied {
                    version: self.version,
                    routes,
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "table refused; keeping the last good one");
                Reloaded::Refused(e)
            }
        }
    }
}

fn log_diagnostics(diags: &[Diagnostic]) {
    for d in diags {
        match d.severity {
            Severity::Error => {
                tracing::error!(object = %d.object, field = %d.field, reason = %d.reason, "{}", d.message)
            }
            Severity::Warning => {
                tracing::warn!(object = %d.object, field = %d.field, reason = %d.reason, "{}", d.message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPSTREAM: &str = "apiVersion: gatehouse.dev/v1alpha1\nkind: Upstream\nmetadata: {name: echo}\nspec:\n  endpoints: [{host: 127.0.0.1, port: 9}]\n";

    fn route(name: &str, path: &str) -> String {
        format!(
            "apiVersion: gatehouse.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: {name}}}\nspec:\n  rules:\n    - matches: [{{path: {{type: Prefix, value: \"{path}\"}}}}]\n      backends: [{{upstream: echo}}]\n"
        )
    }

    fn regex_route(name: &str, pattern: &str) -> String {
        format!(
            "apiVersion: gatehouse.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: {name}}}\nspec:\n  rules:\n    - matches: [{{path: {{type: Regex, value: \"{pattern}\"}}}}]\n      respond: {{status: 200}}\n"
        )
    }

    /// A folder holding `files` (name, text).
    fn folder(files: &[(&str, String)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        write(&dir, files);
        dir
    }

    fn write(dir: &tempfile::TempDir, files: &[(&str, String)]) {
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
    }

    fn object(name: &str) -> ObjectRef {
        ObjectRef {
            kind: gatehouse_compiler::Kind::ApiRoute,
            namespace: "default".into(),
            name: name.into(),
        }
    }

    fn loaded(dir: &tempfile::TempDir) -> Loaded {
        load(dir.path(), false).expect("loads")
    }

    #[test]
    fn a_served_object_that_became_invalid_keeps_the_table() {
        let dir = folder(&[("up.yaml", UPSTREAM.into()), ("a.yaml", route("a", "/a"))]);
        let served = loaded(&dir).accepted;
        assert_eq!(served.get(&object("a")), Some(&true));
        write(&dir, &[("a.yaml", regex_route("a", "/a("))]);
        assert_eq!(
            judge(&served, &loaded(&dir)),
            Verdict::Keep {
                regressed: vec![object("a")]
            }
        );
    }

    #[test]
    fn a_new_invalid_object_does_not_hold_the_rest_back() {
        let dir = folder(&[("up.yaml", UPSTREAM.into()), ("a.yaml", route("a", "/a"))]);
        let served = loaded(&dir).accepted;
        write(
            &dir,
            &[
                ("a.yaml", route("a", "/b")),
                ("b.yaml", regex_route("b", "/b(")),
            ],
        );
        let again = loaded(&dir);
        assert_eq!(again.accepted.get(&object("b")), Some(&false));
        assert_eq!(judge(&served, &again), Verdict::Apply);
    }

    #[test]
    fn files_that_do_not_parse_are_an_error_naming_them() {
        let dir = folder(&[("broken.yaml", "apiVersion: v1\nkind: [oops\n".into())]);
        match load(dir.path(), false) {
            Err(LoadError::Parse { errors }) => {
                assert_eq!(errors.len(), 1);
                assert!(
                    errors[0].to_string().contains("broken.yaml"),
                    "{}",
                    errors[0]
                );
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn reloads_apply_in_order_and_keep_the_last_good_table() {
        let dir = folder(&[("up.yaml", UPSTREAM.into()), ("a.yaml", route("a", "/a"))]);
        let (mut folder, table) = Folder::open(dir.path(), false).expect("opens");
        assert_eq!(table.version, 1);
        assert!(folder.source().starts_with("file:/"), "{}", folder.source());
        let shared = gatehouse_proxy::Shared::new(table).expect("prepares");
        let admin = AdminState::new(shared.clone(), None);

        write(&dir, &[("a.yaml", route("a", "/b"))]);
        assert!(matches!(
            folder.reload(&admin),
            Reloaded::Applied {
                version: 2,
                routes: 1
            }
        ));
        assert_eq!(shared.table().version, 2);

        write(&dir, &[("broken.yaml", "kind: [oops\n".into())]);
        assert!(matches!(folder.reload(&admin), Reloaded::Unreadable(_)));
        std::fs::remove_file(dir.path().join("broken.yaml")).expect("remove");

        write(&dir, &[("a.yaml", regex_route("a", "/a("))]);
        match folder.reload(&admin) {
            Reloaded::Regressed { objects } => assert_eq!(objects, vec![object("a")]),
            other => panic!("expected the table kept, got {other:?}"),
        }
        assert_eq!(shared.table().version, 2, "the last good table serves");
        assert_eq!(folder.version(), 2);
    }

    #[test]
    fn a_folder_that_does_not_exist_or_parse_does_not_open() {
        let dir = folder(&[("broken.yaml", "kind: [oops\n".into())]);
        let missing = dir.path().join("nowhere");
        assert!(matches!(
            Folder::open(&missing, false),
            Err(OpenError::Path { .. })
        ));
        let err = Folder::open(dir.path(), false).expect_err("does not parse");
        assert!(matches!(err, OpenError::Load { .. }));
        assert!(err.to_string().ends_with("do not parse"), "{err}");
    }
}
