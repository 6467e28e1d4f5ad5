//! The Python client's own tests (`clients/python/tests`), run against the
//! `mnemo` binary built with this suite: the package is installed from the
//! repository into a fresh virtual environment, as a user would.

use std::path::Path;
use std::process::Command;

#[test]
fn the_python_client_passes_its_tests() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("skipped: python3 is not installed, so the Python client cannot be tested");
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = tempfile::tempdir().unwrap();
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(venv.path())
        .status()
        .unwrap();
    assert!(made.success(), "python3 -m venv failed");
    let pip = Command::new(venv.path().join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(format!("{}[test]", repo.join("clients/python").display()))
        .output()
        .unwrap();
    assert!(
        pip.status.success(),
        "installing the client failed (PyPI must be reachable for httpx and pytest):\n{}",
        String::from_utf8_lossy(&pip.stderr)
    );
    let tests = Command::new(venv.path().join("bin/python"))
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(repo.join("clients/python/tests"))
        .env("MNEMO_BIN", env!("CARGO_BIN_EXE_mnemo"))
        .output()
        .unwrap();
    println!("{}", String::from_utf8_lossy(&tests.stdout));
    assert!(
        tests.status.success(),
        "the Python client's tests failed:\n{}\n{}",
        String::from_utf8_lossy(&tests.stdout),
        String::from_utf8_lossy(&tests.stderr)
    );
}
