//! Declared settings: [`Declare`], built in `const` context, is how a stage says which
//! settings it accepts.
//!
//! A stage lists them in its `SETTINGS` constant; they flow two ways. Out, through the
//! contract's `describe`, to the host, which refuses a pipeline file that sets anything else,
//! gives a wrong type or leaves out a required one, and shows them in `weir plugin inspect`.
//! In, at `init`: the SDK fills in each declared default that the pipeline file does not set
//! and checks the same rules, so a stage run natively behaves as it does in the host.

/// The type of a setting's value. Settings reach a stage as text; the type says which text
/// is acceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SettingType {
    /// Any text.
    Text,
    /// A whole number that fits an `i64`.
    Integer,
    /// A number that parses as an `f64`.
    Float,
    /// `true` or `false`.
    Boolean,
}

impl SettingType {
    /// The type's name, as in the contract.
    pub const fn as_str(self) -> &'static str {
        match self {
            SettingType::Text => "text",
            SettingType::Integer => "integer",
            SettingType::Float => "float",
            SettingType::Boolean => "boolean",
        }
    }

    /// Whether `value` is text of this type.
    pub fn accepts(self, value: &str) -> bool {
        match self {
            SettingType::Text => true,
            SettingType::Integer => value.parse::<i64>().is_ok(),
            SettingType::Float => value.parse::<f64>().is_ok(),
            SettingType::Boolean => matches!(value, "true" | "false"),
        }
    }
}

/// One setting a stage accepts, built with `const` functions:
///
/// ```
/// use weir_plugin::Declare;
///
/// const SETTINGS: &[Declare] = &[
///     Declare::integer("max").default("1024").help("longest value kept, in bytes"),
///     Declare::text("field").required().help("the field to read"),
/// ];
/// assert_eq!(SETTINGS[0].default_value(), Some("1024"));
/// ```
///
/// The host refuses a plugin whose declarations break its rules (`docs/contract.md`): a name
/// matches `[a-z][a-z0-9_-]{0,63}` (so never starts with `weir.`), no name is declared twice,
/// and a required setting has no default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Declare {
    name: &'static str,
    ty: SettingType,
    required: bool,
    default: Option<&'static str>,
    help: &'static str,
}

impl Declare {
    /// A setting of type `ty`: optional, without a default or help.
    pub const fn new(name: &'static str, ty: SettingType) -> Declare {
        Declare {
            name,
            ty,
            required: false,
            default: None,
            help: "",
        }
    }

    /// A text setting.
    pub const fn text(name: &'static str) -> Declare {
        Declare::new(name, SettingType::Text)
    }

    /// An integer setting.
    pub const fn integer(name: &'static str) -> Declare {
        Declare::new(name, SettingType::Integer)
    }

    /// A float setting.
    pub const fn float(name: &'static str) -> Declare {
        Declare::new(name, SettingType::Float)
    }

    /// A boolean setting.
    pub const fn boolean(name: &'static str) -> Declare {
        Declare::new(name, SettingType::Boolean)
    }

    /// Makes the setting required: a pipeline file must give it.
    pub const fn required(mut self) -> Declare {
        self.required = true;
        self
    }

    /// The value the stage gets when the pipeline file does not give one, as text.
    pub const fn default(mut self, value: &'static str) -> Declare {
        self.default = Some(value);
        self
    }

    /// One line for `weir plugin inspect`.
    pub const fn help(mut self, text: &'static str) -> Declare {
        self.help = text;
        self
    }

    pub const fn name(&self) -> &'static str {
        self.name
    }

    pub const fn setting_type(&self) -> SettingType {
        self.ty
    }

    pub const fn is_required(&self) -> bool {
        self.required
    }

    pub const fn default_value(&self) -> Option<&'static str> {
        self.default
    }

    pub const fn help_text(&self) -> &'static str {
        self.help
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_sets_each_field() {
        const D: Declare = Declare::float("ratio").default("0.5").help("share kept");
        assert_eq!(D.name(), "ratio");
        assert_eq!(D.setting_type(), SettingType::Float);
        assert!(!D.is_required());
        assert_eq!(D.default_value(), Some("0.5"));
        assert_eq!(D.help_text(), "share kept");
        // A required setting takes no default: the host refuses one that has both.
        const R: Declare = Declare::text("path").required();
        assert!(R.is_required());
        assert_eq!(R.default_value(), None);
    }

    #[test]
    fn types_accept_their_text() {
        assert!(SettingType::Integer.accepts("-12"));
        assert!(!SettingType::Integer.accepts("1.5"));
        assert!(SettingType::Float.accepts("1.5"));
        assert!(SettingType::Boolean.accepts("false"));
        assert!(!SettingType::Boolean.accepts("yes"));
        assert!(SettingType::Text.accepts(""));
    }
}
