//! `notes`: a service of a user's own, declared with the macro and nothing else of alknet.

use std::sync::Mutex;
use std::time::Duration;

use alknet_runtime::prelude::*;

/// A note.
#[alk_type]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Counts from 1.
    pub id: u64,
    /// What it says.
    pub text: String,
}

/// Which note was asked for.
#[alk_type]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The id asked for.
    pub id: u64,
}

/// Keeps notes.
#[alk_service(namespace = "notes", version = "1.0.0")]
pub enum NotesProtocol {
    /// Keep a note.
    #[alk_operation(mutation, output = Note)]
    Add {
        /// What the note says.
        text: String,
    },

    /// One note, by id.
    #[alk_operation(
        query,
        output = Note,
        error(code = "NO_SUCH_NOTE", status = 404, details = Missing, description = "no note has this id")
    )]
    Get {
        /// The note's id.
        id: u64,
    },

    /// Every note, oldest first.
    #[alk_operation(query, output = Vec<Note>)]
    List,

    /// Take `ms` milliseconds to answer how many notes there are: a call that is still
    /// running when the node is told to stop.
    #[alk_operation(query, output = u64)]
    Count {
        /// How long to take.
        ms: u64,
    },
}

/// The notes, in memory.
#[derive(Debug, Default)]
pub struct Notes {
    notes: Mutex<Vec<Note>>,
}

impl Notes {
    fn notes(&self) -> std::sync::MutexGuard<'_, Vec<Note>> {
        self.notes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl NotesHandler for Notes {
    async fn add(&self, _ctx: &OperationContext, request: Add) -> Result<Note, CallError> {
        let mut notes = self.notes();
        let note = Note {
            id: notes.len() as u64 + 1,
            text: request.text,
        };
        notes.push(note.clone());
        Ok(note)
    }

    async fn get(&self, _ctx: &OperationContext, request: Get) -> Result<Note, CallError> {
        let found = self
            .notes()
            .iter()
            .find(|note| note.id == request.id)
            .cloned();
        found.ok_or_else(|| {
            NotesErrors::no_such_note(
                format!("there is no note {}", request.id),
                Missing { id: request.id },
            )
        })
    }

    async fn list(&self, _ctx: &OperationContext, _request: List) -> Result<Vec<Note>, CallError> {
        Ok(self.notes().clone())
    }

    async fn count(&self, _ctx: &OperationContext, request: Count) -> Result<u64, CallError> {
        tokio::time::sleep(Duration::from_millis(request.ms)).await;
        Ok(self.notes().len() as u64)
    }
}
