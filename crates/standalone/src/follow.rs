//! Following the manifests: a reload after every change below the path (inotify through
//! `notify`, a burst of writes settled into one reading) and on every [`Reread`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gatehouse_proxy::AdminState;
use notify::{RecursiveMode, Watcher};
use tokio::sync::Notify;

use crate::reload::Folder;

/// Editors write in bursts: how long a burst may go on before the folder is read once.
const SETTLE: Duration = Duration::from_millis(50);

/// Asks [`follow`] to read the manifests again, changed or not (what SIGHUP does in
/// `gatehouse run`). A request made while a reload runs is served after it.
#[derive(Debug, Clone, Default)]
pub struct Reread(Arc<Notify>);

impl Reread {
    /// Asks for one more reading.
    pub fn request(&self) {
        self.0.notify_one();
    }
}

/// Why the manifests cannot be watched.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// No watcher could be made.
    #[error("watching the manifests")]
    Start(#[source] notify::Error),
    /// The path could not be watched.
    #[error("watching {}", path.display())]
    Watch {
        /// The directory watched.
        path: PathBuf,
        /// Why not.
        #[source]
        source: notify::Error,
    },
}

/// Reloads `folder` into the table `admin` serves after every change below its path and
/// on every `reread`, until `stop` completes. `stop` is heeded between reloads: a reload
/// that has begun (its burst settling included) finishes first, so a change made just
/// before the stop is not lost. An error when the path cannot be watched.
pub async fn follow(
    mut folder: Folder,
    admin: &AdminState,
    reread: &Reread,
    stop: impl Future<Output = ()>,
) -> Result<(), WatchError> {
    let (tx, mut changes) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = tx.send(());
        }
    })
    .map_err(WatchError::Start)?;
    // A file is watched through its directory: editors replace files by renaming.
    let path = folder.path();
    let watched = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| path.to_path_buf())
    };
    watcher
        .watch(&watched, RecursiveMode::Recursive)
        .map_err(|source| WatchError::Watch {
            path: watched.clone(),
            source,
        })?;
    let mut stop = std::pin::pin!(stop);
    loop {
        // What to do next is chosen here; the reload itself is not cancelled by `stop`.
        let changed = tokio::select! {
            Some(()) = changes.recv() => true,
            () = reread.0.notified() => false,
            () = &mut stop => return Ok(()),
        };
        if changed {
            tokio::time::sleep(SETTLE).await;
            while changes.try_recv().is_ok() {}
        }
        folder.reload(admin);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFESTS: &str = "apiVersion: gatehouse.dev/v1alpha1\nkind: ApiRoute\nmetadata: {name: r}\nspec:\n  rules:\n    - matches: [{path: {type: Exact, value: /v1}}]\n      respond: {status: 200}\n";

    /// Polls `check` every 20 ms for up to 10 s, while `follow` runs beside it.
    async fn eventually(check: impl Fn() -> bool) -> bool {
        for _ in 0..500 {
            if check() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn changes_and_rereads_reload_the_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("gateway.yaml");
        std::fs::write(&file, MANIFESTS).expect("write");
        let (folder, table) = Folder::open(dir.path(), false).expect("opens");
        let shared = gatehouse_proxy::Shared::new(table).expect("prepares");
        let admin = AdminState::new(shared.clone(), None);
        let reread = Reread::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let following = follow(folder, &admin, &reread, async {
            let _ = stopped.await;
        });
        let checks = async {
            // A reread reloads what is there, changed or not.
            reread.request();
            assert!(
                eventually(|| shared.table().version == 2).await,
                "the reread did not reload"
            );
            // A change reloads.
            std::fs::write(&file, MANIFESTS.replace("value: /v1", "value: /v2")).expect("write");
            assert!(
                eventually(|| shared.table().version >= 3).await,
                "the change did not reload"
            );
            let table = shared.table();
            assert_eq!(
                table.routes[0].rules[0].matches[0].path,
                gatehouse_table::PathMatch::Exact("/v2".into())
            );
        };
        let (followed, ()) = tokio::join!(following, async {
            checks.await;
            let _ = stop.send(());
        });
        assert!(followed.is_ok(), "{followed:?}");
    }
}
