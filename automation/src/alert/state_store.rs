//! Persistence of active alerts so `for` keeps counting from the first
//! activation across a restart of the service. Behind a trait so the service's
//! database store can take over; a JSON file store is provided.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::Alert;

/// Alerts of one group as saved after an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedAlert {
    /// Group key (`file;name`).
    pub group: String,
    pub alert: Alert,
}

#[derive(Debug, thiserror::Error)]
pub enum StateStoreError {
    #[error("alert state file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("alert state file {path} is not valid: {source}")]
    Decode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Where active alerts are kept between runs.
pub trait ForStateStore: Send + Sync {
    /// Every saved alert.
    fn load(&self) -> Result<Vec<SavedAlert>, StateStoreError>;
    /// Replaces the saved alerts of one group.
    fn save_group(&self, group: &str, alerts: &[Alert]) -> Result<(), StateStoreError>;
}

/// A JSON file, rewritten atomically (temp file + rename) on every change.
pub struct FileStateStore {
    path: PathBuf,
    cache: Mutex<BTreeMap<String, Vec<Alert>>>,
}

impl FileStateStore {
    /// Opens (or starts) the state file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StateStoreError> {
        let path = path.as_ref().to_path_buf();
        let cache = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| StateStoreError::Decode {
                    path: path.clone(),
                    source,
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(StateStoreError::Io { path, source }),
        };
        Ok(FileStateStore {
            path,
            cache: Mutex::new(cache),
        })
    }
}

impl ForStateStore for FileStateStore {
    fn load(&self) -> Result<Vec<SavedAlert>, StateStoreError> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        Ok(cache
            .iter()
            .flat_map(|(g, alerts)| {
                alerts.iter().map(|a| SavedAlert {
                    group: g.clone(),
                    alert: a.clone(),
                })
            })
            .collect())
    }

    fn save_group(&self, group: &str, alerts: &[Alert]) -> Result<(), StateStoreError> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let unchanged = cache.get(group).map(|v| v.as_slice()) == Some(alerts)
            || (alerts.is_empty() && !cache.contains_key(group));
        if unchanged {
            return Ok(());
        }
        if alerts.is_empty() {
            cache.remove(group);
        } else {
            cache.insert(group.to_string(), alerts.to_vec());
        }
        let io = |source| StateStoreError::Io {
            path: self.path.clone(),
            source,
        };
        let bytes =
            serde_json::to_vec_pretty(&*cache).map_err(|source| StateStoreError::Decode {
                path: self.path.clone(),
                source,
            })?;
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)
    }
}
