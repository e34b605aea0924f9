//! GoTrue's input rules for emails, phone numbers and passwords, with its
//! error messages.

use crate::errors::ApiError;

/// GoTrue's default `GOTRUE_PASSWORD_MIN_LENGTH`.
const MIN_PASSWORD_LENGTH: usize = 6;
/// GoTrue's `MaxPasswordLength`.
pub(super) const MAX_PASSWORD_LENGTH: usize = 72;

/// Endpoints that name a user by email or by phone number. The emulator has
/// no phone provider, so each of them takes an email only, and each words
/// the refusals its own way.
#[derive(Clone, Copy, Debug)]
pub(super) enum EmailOnly {
    /// The password grant.
    Login,
    /// `POST /signup`.
    Signup,
}

/// The email of a request that may name an email or a phone number: exactly
/// one of them must be given, and it must be the email.
pub(super) fn email_only<'a>(email: &'a str, phone: &str, endpoint: EmailOnly) -> Result<&'a str, ApiError> {
    let (action, neither, phone_disabled) = match endpoint {
        EmailOnly::Login => (
            "login",
            ApiError::validation("missing email or phone"),
            ApiError::unprocessable("phone_provider_disabled", "Phone logins are disabled"),
        ),
        EmailOnly::Signup => (
            "signup",
            ApiError::validation("Sign up only available with email provider"),
            ApiError::bad_request("phone_provider_disabled", "Phone signups are disabled"),
        ),
    };
    match (email.is_empty(), phone.is_empty()) {
        (false, false) => {
            Err(ApiError::validation(format!("Only an email address or phone number should be provided on {action}.")))
        }
        (true, true) => Err(neither),
        (true, false) => Err(phone_disabled),
        (false, true) => Ok(email),
    }
}

/// `validateEmail`: required, at most 255 characters, plausible format;
/// lower-cased.
pub(super) fn validate_email(email: &str) -> Result<String, ApiError> {
    if email.is_empty() {
        return Err(ApiError::validation("An email address is required"));
    }
    if email.len() > 255 {
        return Err(ApiError::validation("An email address is too long"));
    }
    let plausible = email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && !domain.is_empty()
            && !domain.contains('@')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !email.chars().any(char::is_whitespace)
    });
    if !plausible {
        return Err(ApiError::validation("Unable to validate email address: invalid format"));
    }
    Ok(email.to_lowercase())
}

/// `validatePhone`: E.164 digits without the plus.
pub(super) fn validate_phone(phone: &str) -> Result<String, ApiError> {
    let phone: String = phone.trim_start_matches('+').chars().filter(|c| *c != ' ').collect();
    let valid =
        phone.len() >= 2 && phone.len() <= 15 && phone.chars().all(|c| c.is_ascii_digit()) && !phone.starts_with('0');
    if valid { Ok(phone) } else { Err(ApiError::validation("Invalid phone number format (E.164 required)")) }
}

/// `checkPasswordStrength` with GoTrue's defaults (minimum length only).
pub(super) fn check_password_strength(password: &str) -> Result<(), ApiError> {
    if password.len() > MAX_PASSWORD_LENGTH {
        return Err(ApiError::validation(format!("Password cannot be longer than {MAX_PASSWORD_LENGTH} characters")));
    }
    if password.len() < MIN_PASSWORD_LENGTH {
        return Err(ApiError::weak_password(MIN_PASSWORD_LENGTH));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_validation() {
        assert_eq!(validate_email("A@B.io"), Ok("a@b.io".to_owned()));
        assert!(validate_email("").is_err());
        assert!(validate_email("nope").is_err());
        assert!(validate_email("a@").is_err());
    }

    #[test]
    fn email_only_refuses_in_each_endpoints_words() {
        let both_login = "Only an email address or phone number should be provided on login.";
        let both_signup = "Only an email address or phone number should be provided on signup.";
        let cases = [
            ("a@b.io", "15550100", EmailOnly::Login, 400, "validation_failed", both_login),
            ("a@b.io", "15550100", EmailOnly::Signup, 400, "validation_failed", both_signup),
            ("", "", EmailOnly::Login, 400, "validation_failed", "missing email or phone"),
            ("", "", EmailOnly::Signup, 400, "validation_failed", "Sign up only available with email provider"),
            ("", "15550100", EmailOnly::Login, 422, "phone_provider_disabled", "Phone logins are disabled"),
            ("", "15550100", EmailOnly::Signup, 400, "phone_provider_disabled", "Phone signups are disabled"),
        ];
        for (email, phone, endpoint, status, code, message) in cases {
            let refusal = email_only(email, phone, endpoint).err().map(|e| (e.status.as_u16(), e.code, e.message));
            assert_eq!(refusal, Some((status, code, message.to_owned())), "{email:?} {phone:?} {endpoint:?}");
        }
        assert_eq!(email_only("a@b.io", "", EmailOnly::Login), Ok("a@b.io"));
        assert_eq!(email_only("a@b.io", "", EmailOnly::Signup), Ok("a@b.io"));
    }
}
