//! Where the shared state lives: one object store addressed by a URL (`file://` or a plain path,
//! `s3://bucket/prefix`, `memory://`), holding the tables and the registry. Every replica on the
//! same URL sees the same state; what belongs to one replica (its write-ahead log, its id) stays on
//! its own disk and is not here.
use bytes::Bytes;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::collections::BTreeMap;
use std::sync::Arc;
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    #[error("storage_url {0:?} is neither a URL nor a usable directory")]
    Url(String),
    #[error("storage_url scheme {0:?} is not supported (file, s3 or memory)")]
    Scheme(String),
    #[error("storage_options key {0:?} is not an S3 option")]
    Option(String),
    #[error("object store {url}: {source}")]
    Store {
        url: String,
        source: Box<object_store::Error>,
    },
}

/// The object store at a URL, with the path inside it that the URL names.
#[derive(Debug, Clone)]
pub struct Location {
    /// Ends with `/`, so that joining a relative name stays inside it.
    url: Url,
    root: Arc<dyn ObjectStore>,
    prefix: Path,
    /// Local stores do not fsync; what must survive a power cut is synced here by hand.
    local: bool,
}

/// Whether a conditional create wrote the object or found it there already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Written,
    AlreadyExists,
}

impl Location {
    /// `storage_url` as configured: a URL, or a directory path (created if missing). S3 takes the
    /// usual `AWS_*` environment variables, overridden by `options` (object_store's S3 keys, such
    /// as `aws_endpoint`, `aws_region`, `aws_allow_http`).
    pub fn open(
        storage_url: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<Self, LocationError> {
        let url = match Url::parse(storage_url) {
            Ok(url) if url.scheme().len() > 1 => url,
            // A bare path (or a Windows drive letter, which parses as a one-letter scheme).
            _ => {
                let dir = std::path::absolute(storage_url)
                    .map_err(|_| LocationError::Url(storage_url.to_owned()))?;
                Url::from_directory_path(dir)
                    .map_err(|()| LocationError::Url(storage_url.to_owned()))?
            }
        };
        let url = with_trailing_slash(url);
        let root: Arc<dyn ObjectStore> = match url.scheme() {
            "file" => {
                let dir = url
                    .to_file_path()
                    .map_err(|()| LocationError::Url(storage_url.to_owned()))?;
                std::fs::create_dir_all(&dir)
                    .map_err(|_| LocationError::Url(storage_url.to_owned()))?;
                Arc::new(LocalFileSystem::new())
            }
            "memory" => Arc::new(InMemory::new()),
            "s3" | "s3a" => {
                let mut builder = AmazonS3Builder::from_env().with_url(url.as_str());
                for (key, value) in options {
                    let key: AmazonS3ConfigKey = key
                        .to_ascii_lowercase()
                        .parse()
                        .map_err(|_| LocationError::Option(key.clone()))?;
                    builder = builder.with_config(key, value);
                }
                Arc::new(builder.build().map_err(|source| LocationError::Store {
                    url: url.to_string(),
                    source: Box::new(source),
                })?)
            }
            other => return Err(LocationError::Scheme(other.to_owned())),
        };
        // The bucket (or filesystem) is the store; the URL's path is the prefix inside it.
        let prefix = Path::from_url_path(url.path())
            .map_err(|_| LocationError::Url(storage_url.to_owned()))?;
        Ok(Self {
            local: url.scheme() == "file",
            url,
            root,
            prefix,
        })
    }

    /// A fresh in-memory store, for tests.
    #[cfg(test)]
    pub fn memory() -> Self {
        Self::open("memory:///", &BTreeMap::new()).expect("memory:// always opens")
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The store at the root of the bucket (or filesystem): Delta decorates it with a table's prefix.
    pub fn root(&self) -> Arc<dyn ObjectStore> {
        self.root.clone()
    }

    /// The URL of a directory inside this location (`tables/readings/`).
    pub fn url_of(&self, relative: &str) -> Url {
        let joined = self
            .url
            .join(&format!("{}/", relative.trim_matches('/')))
            .unwrap_or_else(|_| self.url.clone());
        with_trailing_slash(joined)
    }

    /// The URL of a directory inside this location, made to exist where directories do (delta-rs
    /// refuses a local table path that does not exist yet; object stores have no directories).
    pub fn directory(&self, relative: &str) -> Result<Url, LocationError> {
        let url = self.url_of(relative);
        if self.local {
            let dir = url
                .to_file_path()
                .map_err(|()| LocationError::Url(url.to_string()))?;
            std::fs::create_dir_all(&dir).map_err(|_| LocationError::Url(url.to_string()))?;
        }
        Ok(url)
    }

    /// The object path of a name inside this location (`registry/_log/00000000000000000001.json`).
    pub fn path_of(&self, relative: &str) -> Path {
        relative
            .split('/')
            .filter(|part| !part.is_empty())
            .fold(self.prefix.clone(), |path, part| path.clone().join(part))
    }

    fn store_error(&self) -> impl Fn(object_store::Error) -> LocationError + '_ {
        |source| LocationError::Store {
            url: self.url.to_string(),
            source: Box::new(source),
        }
    }

    /// Writes `bytes` at `path` unless something is there already: the one atomic step that
    /// several replicas agree through. Durable when it returns `Written`, on a local disk too.
    pub async fn create(&self, path: &Path, bytes: Bytes) -> Result<Created, LocationError> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .root
            .put_opts(path, PutPayload::from(bytes), options)
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => return Ok(Created::AlreadyExists),
            Err(error) => return Err(self.store_error()(error)),
        }
        if self.local {
            sync_local(path).map_err(|source| LocationError::Store {
                url: self.url.to_string(),
                source: Box::new(object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: Box::new(source),
                }),
            })?;
        }
        Ok(Created::Written)
    }

    /// The object at `path`, or `None` when there is none.
    pub async fn get(&self, path: &Path) -> Result<Option<Bytes>, LocationError> {
        match self.root.get(path).await {
            Ok(result) => result.bytes().await.map(Some).map_err(self.store_error()),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(self.store_error()(error)),
        }
    }

    /// The names directly under `dir` that sort after `after`, in order.
    pub async fn list_after(
        &self,
        dir: &Path,
        after: Option<&Path>,
    ) -> Result<Vec<Path>, LocationError> {
        use futures_util::TryStreamExt;
        let listing = match after {
            Some(offset) => self.root.list_with_offset(Some(dir), offset),
            None => self.root.list(Some(dir)),
        };
        let mut names: Vec<Path> = listing
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(self.store_error())?;
        names.sort();
        Ok(names)
    }

    pub async fn delete(&self, path: &Path) -> Result<(), LocationError> {
        match self.root.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(self.store_error()(error)),
        }
    }
}

fn with_trailing_slash(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

/// fsyncs a file the local store wrote and the directory that names it.
fn sync_local(path: &Path) -> std::io::Result<()> {
    let file = std::path::PathBuf::from(format!("/{path}"));
    std::fs::File::open(&file)?.sync_all()?;
    match file.parent() {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_a_file_url_and_a_bucket_url_name_the_same_kind_of_place() {
        let dir = tempfile::tempdir().unwrap();
        let by_path = Location::open(dir.path().to_str().unwrap(), &BTreeMap::new()).unwrap();
        assert_eq!(by_path.url().scheme(), "file");
        assert!(by_path
            .url_of("tables/readings")
            .as_str()
            .ends_with("/tables/readings/"));
        let bucket = Location::open(
            "s3://lake/ledger",
            &BTreeMap::from([
                ("aws_endpoint".to_owned(), "http://127.0.0.1:1".to_owned()),
                ("aws_region".to_owned(), "us-east-1".to_owned()),
            ]),
        )
        .unwrap();
        assert_eq!(
            bucket.path_of("registry/_log").as_ref(),
            "ledger/registry/_log"
        );
        assert_eq!(
            bucket.url_of("tables/readings").as_str(),
            "s3://lake/ledger/tables/readings/"
        );
        let unknown = Location::open(
            "s3://lake",
            &BTreeMap::from([("aws_endpiont".to_owned(), "x".to_owned())]),
        );
        assert!(matches!(unknown, Err(LocationError::Option(key)) if key == "aws_endpiont"));
    }

    #[tokio::test]
    async fn a_create_wins_once_on_a_local_disk_and_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        for location in [
            Location::open(dir.path().to_str().unwrap(), &BTreeMap::new()).unwrap(),
            Location::memory(),
        ] {
            let path = location.path_of("registry/_log/1.json");
            assert_eq!(
                location
                    .create(&path, Bytes::from_static(b"a"))
                    .await
                    .unwrap(),
                Created::Written
            );
            assert_eq!(
                location
                    .create(&path, Bytes::from_static(b"b"))
                    .await
                    .unwrap(),
                Created::AlreadyExists
            );
            assert_eq!(
                location.get(&path).await.unwrap().unwrap(),
                Bytes::from_static(b"a")
            );
            let dir = location.path_of("registry/_log");
            assert_eq!(
                location.list_after(&dir, None).await.unwrap(),
                vec![path.clone()]
            );
            assert!(location
                .list_after(&dir, Some(&path))
                .await
                .unwrap()
                .is_empty());
        }
    }
}
