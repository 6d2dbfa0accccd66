//! Errors from compiling and rendering templates. Both name the template and, when handlebars
//! knows it, the line and column, so that the message points at what to fix.

use snafu::Snafu;

/// Formats ` at line L, column C` (or less, when a position is unknown).
fn position(line: &Option<usize>, column: &Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(" at line {line}, column {column}"),
        (Some(line), None) => format!(" at line {line}"),
        _ => String::new(),
    }
}

#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    /// The template text is not valid handlebars.
    #[snafu(display(
        "template {name} has a syntax error{}: {reason}; fix the template",
        position(line, column)
    ))]
    Syntax {
        name: String,
        line: Option<usize>,
        column: Option<usize>,
        reason: String,
    },

    /// The template is valid but rendering it failed, most often in a helper given bad input.
    #[snafu(display("template {name} failed to render{}: {reason}", position(line, column)))]
    Render {
        name: String,
        line: Option<usize>,
        column: Option<usize>,
        reason: String,
    },
}

impl Error {
    /// The template's name as given to the renderer (usually its path).
    pub fn template(&self) -> &str {
        match self {
            Error::Syntax { name, .. } | Error::Render { name, .. } => name,
        }
    }

    /// The line of the template the error was found on, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            Error::Syntax { line, .. } | Error::Render { line, .. } => *line,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
