//! Generates a client from the legacy C++ TinyKV proto (a test fixture), so
//! the wire-compatibility test talks exactly as the old clients do.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
    let file = format!("{dir}/legacy_tinykv.proto");
    println!("cargo:rerun-if-changed={file}");
    let fds = protox::compile([&file], [dir])?;
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(fds)?;
    Ok(())
}
