//! The app's own files at `/`: tower-http's `ServeDir`, behind a check that the file a path names lies inside the
//! static directory once symlinks are resolved. `ServeDir` refuses `..` but follows symlinks, so a link inside the
//! directory (`public/escape → ../drakon.toml`) would otherwise serve whatever it points at.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;
use tower_http::services::ServeDir;

/// Serves the files under `dir`, none from outside it.
pub fn router(dir: PathBuf) -> Router {
    let root = Arc::new(dir.clone());
    Router::new().fallback_service(ServeDir::new(dir)).layer(from_fn_with_state(root, inside))
}

async fn inside(State(root): State<Arc<PathBuf>>, request: Request, next: Next) -> Response {
    if escapes(&root, request.uri().path()).await {
        return StatusCode::NOT_FOUND.into_response();
    }
    next.run(request).await
}

/// Whether URL path `path` names, under `root`, something that resolves outside it. A path naming nothing does not
/// escape: `ServeDir` answers it with 404.
async fn escapes(root: &Path, path: &str) -> bool {
    // The directory itself may be a link (a deploy's `current/public`); what counts is where it resolves to.
    let Ok(root) = tokio::fs::canonicalize(root).await else { return false };
    let mut candidate = root.clone();
    for segment in path.split('/') {
        let segment = percent_decode_str(segment).decode_utf8_lossy();
        match &*segment {
            "" | "." => continue,
            ".." => return true,
            s if s.contains(['/', '\\', '\0']) => return true,
            s => candidate.push(s),
        }
    }
    match tokio::fs::canonicalize(&candidate).await {
        Ok(real) => !real.starts_with(&root),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn links_out_of_the_directory_escape_and_links_within_it_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let public = dir.path().join("public");
        std::fs::create_dir_all(public.join("css")).unwrap();
        std::fs::write(public.join("index.html"), "hi").unwrap();
        std::fs::write(public.join("css/app.css"), "body {}").unwrap();
        std::fs::write(dir.path().join("drakon.toml"), "secret").unwrap();
        std::os::unix::fs::symlink("../drakon.toml", public.join("escape-link")).unwrap();
        std::os::unix::fs::symlink("..", public.join("up")).unwrap();
        std::os::unix::fs::symlink("css/app.css", public.join("style.css")).unwrap();
        let table = [
            ("/index.html", false),
            ("/", false),
            ("/css/app.css", false),
            ("/style.css", false),
            ("/missing.html", false),
            ("/escape-link", true),
            ("/escape%2Dlink", true),
            ("/up/drakon.toml", true),
            ("/css/../../drakon.toml", true),
            ("/css%2F..%2F..%2Fdrakon.toml", true),
        ];
        for (path, want) in table {
            assert_eq!(escapes(&public, path).await, want, "{path}");
        }
    }
}
