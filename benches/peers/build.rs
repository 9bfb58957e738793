fn main() {
    tonic_prost_build::compile_protos("proto/echo.proto")
        .expect("protoc compiles proto/echo.proto");
}
