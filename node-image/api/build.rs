//! Compiles the .proto files with protox (pure Rust), so no `protoc` is needed on the machine.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/medledger/v1/ledger.proto",
        "proto/medledger/v1/peer.proto",
        "proto/medledger/v1/emr.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
