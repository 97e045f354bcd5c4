fn main() {
    print!("{}", gatehouse_api::crds_yaml().expect("crds serialize"));
}
