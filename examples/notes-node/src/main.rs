use notes_node::{Notes, NotesProtocol};

fn main() -> std::process::ExitCode {
    alknet::cli::run(|node| node.local(NotesProtocol::local(Notes::default())))
}
