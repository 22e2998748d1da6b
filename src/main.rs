fn main() {
    std::process::exit(tenantfs::cli::run());
}
