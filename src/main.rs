fn main() -> std::process::ExitCode {
    betomail::cli::main()
}
