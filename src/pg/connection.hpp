#pragma once

#include <libpq-fe.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace pgward::pg {

// What the user chose for the connection: flags and POSTGRES_* variables.
// Anything left unset is libpq's to decide (PG* variables, then its
// defaults), so pgward honours PGHOST, PGSSLMODE, PGPASSFILE... as libpq does.
struct ConnectionOptions {
    struct Setting {
        std::string value;
        bool from_flag = false;  // a flag outranks a conninfo/URI given as dbname
    };
    std::optional<Setting> host;
    std::optional<Setting> port;
    std::optional<Setting> user;
    std::optional<Setting> dbname;  // a name, a key=value string or a URI
    std::optional<std::string> password;
    // Another database on the same server: applied after everything else, so
    // host and port still come from a conninfo/URI given as dbname.
    std::optional<std::string> dbname_override;
    // A server pgward started itself (the sandbox): the operator's libpq
    // environment (pg/environment.hpp) and password file never apply.
    bool isolated = false;
    // "true" for a physical replication connection (IDENTIFY_SYSTEM), as
    // pg_basebackup and pg_receivewal open.
    std::optional<std::string> replication;

    // The same connection, to another database of the same server.
    ConnectionOptions with_dbname(const std::string& name) const;
};

class Result {
  public:
    explicit Result(PGresult* result) : result_(result, &PQclear) {}

    int rows() const { return PQntuples(result_.get()); }
    int columns() const { return PQnfields(result_.get()); }
    bool is_null(int row, int column) const { return PQgetisnull(result_.get(), row, column); }
    std::string get(int row, int column) const { return PQgetvalue(result_.get(), row, column); }
    std::optional<std::string> get_optional(int row, int column) const;

  private:
    std::unique_ptr<PGresult, void (*)(PGresult*)> result_;
};

// One libpq connection, closed with the object. Errors are pgward::Error with
// the target named ("host=... port=... dbname=... user=...") and a hint
// chosen from the SQLSTATE or libpq's message.
class Connection {
  public:
    static Connection open(const ConnectionOptions& options, const std::string& application_name);

    Connection(Connection&&) noexcept = default;
    Connection& operator=(Connection&&) noexcept = default;

    Result exec(const std::string& sql, const std::vector<std::string>& params = {});
    // Exactly one row and one column, else an error.
    std::optional<std::string> query_value(const std::string& sql,
                                           const std::vector<std::string>& params = {});

    int server_version_num() const { return PQserverVersion(conn_.get()); }
    std::string server_version_text() const;
    std::string database() const { return PQdb(conn_.get()); }
    std::string user() const { return PQuser(conn_.get()); }
    std::string target() const;

    // A SQL string literal or identifier for this connection, quoted by libpq
    // (PQescapeLiteral, PQescapeIdentifier) for its client encoding and its
    // standard_conforming_strings. For SQL that cannot take a parameter.
    std::string escape_literal(const std::string& value) const;
    std::string escape_identifier(const std::string& name) const;

    // The conninfo string a child tool (pg_dump) needs to reach exactly this
    // server and database. It holds no secret: the password libpq used goes
    // to the child's environment (password_used(), PGPASSWORD), and any
    // other secret (sslpassword...) to a 0600 service file in a private 0700
    // directory that the conninfo names (service=pgward) and
    // child_environment() points at (PGSERVICEFILE); the file lives as long
    // as this connection.
    std::string child_conninfo() const;
    std::optional<std::string> password_used() const;
    // The variables a child tool aimed at this server gets besides its
    // conninfo: the operator's PG* variables for the operator's server,
    // none for one pgward started (isolated); PGSERVICEFILE when secrets are
    // handed over in a file.
    std::vector<std::pair<std::string, std::string>> child_environment() const;
    bool isolated() const { return isolated_; }

    PGconn* raw() const { return conn_.get(); }

  private:
    class SecretFile;

    Connection(PGconn* conn, bool isolated) : conn_(conn, &PQfinish), isolated_(isolated) {}
    // The file with the secrets no argv may carry, made on first use; null
    // when the connection has none but its password.
    const SecretFile* child_secrets() const;

    std::unique_ptr<PGconn, void (*)(PGconn*)> conn_;
    bool isolated_ = false;
    mutable std::shared_ptr<const SecretFile> secrets_;
    mutable bool secrets_checked_ = false;
};

// The database a connection with these options would use, as libpq resolves
// it (a conninfo or URI in dbname, PGDATABASE, the user name...).
std::string resolve_database_name(const ConnectionOptions& options);

// True when a server accepts connections with these options (PQpingParams).
bool ping(const ConnectionOptions& options);

// host/port/dbname/user as libpq resolved them, for messages.
std::string describe_target(PGconn* conn);

// A SQL identifier, double-quoted and escaped, e.g. "Mixed ""Case""", for a
// name that is also shown or kept (a table in a message, the undo SQL a
// restore records, COPY of a listed table). Statements built around one
// connection use Connection::escape_identifier (PQescapeIdentifier). Both
// give the same text: only '"' is doubled, a byte that no multibyte client
// encoding PostgreSQL supports uses inside a character (unlike '\' for
// literals, see quote_literal).
std::string quote_identifier(const std::string& name);
// A SQL string literal, quoted and escaped the same whatever
// standard_conforming_strings says (E'...' when it holds a backslash), for
// text shown to a person (a suggested fix). SQL sent over a connection uses
// Connection::escape_literal: in a client encoding such as SJIS a backslash
// byte can be half of a character, which only libpq's quoting knows.
std::string quote_literal(const std::string& value);
// A conninfo value, single-quoted and escaped.
std::string quote_conninfo_value(const std::string& value);

}  // namespace pgward::pg
