//! Generates the `mnemo.v1` bindings with the `protoc` shipped inside the
//! `protoc-bin-vendored` crate, so a fresh machine needs nothing but cargo.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let file = root.join("mnemo/v1/mnemo.proto");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("mnemo_descriptor.bin"))
        .compile_with_config(config, std::slice::from_ref(&file), &[root])?;
    println!("cargo:rerun-if-changed={}", file.display());
    Ok(())
}
