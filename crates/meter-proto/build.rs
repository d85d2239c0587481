fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = ["meter/v1/ingest.proto", "meter/v1/quota.proto", "meter/v1/totals.proto", "meter/v1/rows.proto"]
        .map(|f| root.join(f));
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    tonic_prost_build::configure().compile_protos(&files, &[root])?;
    Ok(())
}
