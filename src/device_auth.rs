//! Devices on the embedded MQTT endpoint log in as SQL users (`--mqtt-auth`): the
//! CONNECT's user name and password must be those of a user with the writer or admin
//! role. Joins the query crate's users to the ingest crate's login check.

use std::sync::Arc;

use wattdb_ingest::mqtt_endpoint::{DeviceAuth, LoginRefused};
use wattdb_query::users::{Role, Users};

pub struct UsersLogin(pub Arc<Users>);

impl DeviceAuth for UsersLogin {
    fn check(&self, user: &str, password: &str) -> Result<(), LoginRefused> {
        let secret = self.0.secret(user).ok_or(LoginRefused::BadLogin)?;
        if !secret.matches(password) {
            return Err(LoginRefused::BadLogin);
        }
        match self.0.role(user) {
            Some(Role::Writer | Role::Admin) => Ok(()),
            _ => Err(LoginRefused::NotAuthorized),
        }
    }
}
