//! Compiles the API from `proto/` with protox (no system `protoc`), and
//! writes the encoded descriptor set that server reflection serves.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/sessionbridge/v1/sessionbridge.proto";
    println!("cargo:rerun-if-changed=proto");

    // Source info keeps the .proto comments, so `grpcurl describe` shows them.
    let fds = protox::Compiler::new(["proto"])?
        .include_source_info(true)
        .include_imports(true)
        .open_file(proto)?
        .file_descriptor_set();

    let out = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out.join("sessionbridge_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::codec::StrictCodec")
        .compile_fds(fds)?;
    Ok(())
}
