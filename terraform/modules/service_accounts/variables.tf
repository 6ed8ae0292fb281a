variable "project_id" {
  description = "The project of the service accounts."
  type        = string
}

variable "name" {
  description = "Prefix of every account id (an account id has 6 to 30 characters)."
  type        = string
}

variable "accounts" {
  description = "Short name => description. The account id is NAME-SHORTNAME."
  type        = map(string)

  validation {
    condition     = alltrue([for k in keys(var.accounts) : can(regex("^[a-z][a-z0-9-]{1,14}$", k))])
    error_message = "Short names are lowercase letters, digits and dashes, at most 15 characters."
  }
}

variable "project_roles" {
  description = "Short name => project-level roles."
  type        = map(list(string))
  default     = {}

  validation {
    condition = alltrue(flatten([
      for roles in values(var.project_roles) : [
        for r in roles : !contains(["roles/owner", "roles/editor", "roles/viewer"], r)
      ]
    ]))
    error_message = "Primitive roles (owner, editor, viewer) are not granted to deployables."
  }
}

variable "conditional_roles" {
  description = "Binding key => {account, role, title, expression}: a project-level role limited by an IAM condition."
  type = map(object({
    account    = string
    role       = string
    title      = string
    expression = string
  }))
  default = {}
}
