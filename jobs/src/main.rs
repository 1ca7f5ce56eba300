fn main() {
    std::process::exit(tidewater_jobs::main_with(tidewater_jobs::Registry::builtin()));
}
