fn main() {
    eprintln!("rsp-registrar: not yet implemented");
    std::process::exit(2);
}
