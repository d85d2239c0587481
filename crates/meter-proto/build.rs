fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = ["meter/v1/ingest.proto", "meter/v1/quota.proto", "meter/v1/totals.proto", "meter/v1/rows.proto"]
        .map(|f| root.join(f));
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    tonic_prost_build::configure().compile_protos(&files, &[root])?;
    // The Ingest server as ingest runs it: the same service and method, but
    // it receives a Report's bytes (`report_codec`), which it reads into
    // Kafka records itself (`report_read`); the generated `ingest_server`
    // above decodes them into prost's structs first.
    let report = tonic_build::manual::Method::builder()
        .name("report")
        .route_name("Report")
        .input_type("crate::report_codec::RawReport")
        .output_type("crate::v1::ReportResponse")
        .codec_path("crate::report_codec::ReportCodec")
        .build();
    let service = tonic_build::manual::Service::builder().name("Ingest").package("meter.v1").method(report).build();
    tonic_build::manual::Builder::new().build_client(false).compile(&[service]);
    Ok(())
}
