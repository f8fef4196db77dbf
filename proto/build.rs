//! Compiles `regsweep/v1/*.proto` with protox (no system `protoc`), generates
//! prost types, tonic services and pbjson serde impls into `OUT_DIR`, and
//! writes the encoded descriptor set for server reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "regsweep/v1/job.proto",
        "regsweep/v1/worker.proto",
        "regsweep/v1/cron.proto",
        "regsweep/v1/registry.proto",
        "regsweep/v1/policy.proto",
        "regsweep/v1/scrubber.proto",
    ];
    for proto in &protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::Compiler::new(["."])?
        .include_imports(true)
        .include_source_info(true)
        .open_files(protos)?
        .file_descriptor_set();

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_bytes = fds.encode_to_vec();
    std::fs::write(out_dir.join("regsweep_descriptor.bin"), &descriptor_bytes)?;

    tonic_prost_build::configure()
        // The `Connect` rpc would clash with the generated `connect` dialer;
        // clients are built from a `Channel` instead.
        .build_transport(false)
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(fds)?;

    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .preserve_proto_field_names()
        .build(&[".regsweep"])?;
    Ok(())
}
