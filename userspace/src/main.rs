fn main() {
    println!("rsplb: {} bytes of XDP object", rsplb::XDP_OBJECT.len());
}
