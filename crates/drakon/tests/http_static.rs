//! The app's files are served from `static_dir` and from nowhere else: a symlink in it that leads out of it (to the
//! config with its secrets, say) is not followed, while one that stays inside is.

mod common;

use common::{BIN, TODO, http};
use drakon_testkit::TestServer;

#[tokio::test]
async fn links_out_of_the_static_directory_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("drakon.toml"), TODO).unwrap();
    let public = dir.path().join("public");
    std::fs::create_dir(&public).unwrap();
    std::fs::write(public.join("index.html"), "<p>todo</p>").unwrap();
    std::os::unix::fs::symlink("../drakon.toml", public.join("escape-link")).unwrap();
    std::os::unix::fs::symlink("..", public.join("up")).unwrap();
    std::os::unix::fs::symlink("index.html", public.join("home.html")).unwrap();
    let server = TestServer::spawn_in(BIN, dir, &[]).await;

    let page = http(&server.addr, "GET", "/index.html", &[], b"").await;
    assert_eq!((page.status, page.body.as_str()), (200, "<p>todo</p>"));
    assert_eq!(http(&server.addr, "GET", "/home.html", &[], b"").await.status, 200, "a link within the directory");
    for path in ["/escape-link", "/up/drakon.toml", "/escape%2Dlink"] {
        let response = http(&server.addr, "GET", path, &[], b"").await;
        assert_eq!(response.status, 404, "{path}");
        assert!(!response.body.contains("[server]"), "{path} served the config");
    }
}
