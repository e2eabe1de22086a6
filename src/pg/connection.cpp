#include "pg/connection.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <list>
#include <string_view>

#include "pg/environment.hpp"
#include "util/error.hpp"
#include "util/files.hpp"
#include "util/log.hpp"

namespace pgward::pg {
namespace {

std::string one_line(const std::string& text) {
    std::string out;
    bool space = false;
    for (char c : text) {
        if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
            space = true;
            continue;
        }
        if (space && !out.empty()) {
            out += ' ';
        }
        space = false;
        out += c;
    }
    return out;
}

std::string connection_hint(const std::string& message) {
    if (message.find("password authentication failed") != std::string::npos ||
        message.find("no password supplied") != std::string::npos) {
        return "check POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE, PGPASSWORD, the passfile) for "
               "this user";
    }
    if (message.find("database") != std::string::npos &&
        message.find("does not exist") != std::string::npos) {
        return "check the database name (--dbname / POSTGRES_DB)";
    }
    if (message.find("role") != std::string::npos &&
        message.find("does not exist") != std::string::npos) {
        return "check the user name (--username / POSTGRES_USER)";
    }
    if (message.find("Connection refused") != std::string::npos ||
        message.find("No such file or directory") != std::string::npos ||
        message.find("could not translate host name") != std::string::npos ||
        message.find("timeout expired") != std::string::npos) {
        return "is the server running and reachable at that host and port? check --host/--port "
               "(POSTGRES_HOST/POSTGRES_PORT)";
    }
    if (message.find("SSL") != std::string::npos) {
        return "check sslmode (PGSSLMODE) against the server's TLS setup";
    }
    return "check the connection settings (--host, --port, --username, --dbname)";
}

std::string query_hint(const char* sqlstate) {
    std::string state = sqlstate == nullptr ? "" : sqlstate;
    if (state == "42501") {
        return "the user lacks a privilege; connect as the database owner or a superuser";
    }
    if (state.rfind("08", 0) == 0) {
        return "the connection broke; is the server still running?";
    }
    if (state.rfind("53", 0) == 0) {
        return "the server is out of resources (disk, memory or connections)";
    }
    if (state == "57P01" || state == "57P02" || state == "57P03") {
        return "the server is shutting down or restarting";
    }
    return {};
}

// Server notices become log lines instead of raw text on stderr.
void relay_notice(void*, const char* message) {
    std::string text = one_line(message);
    if (text.rfind("WARNING:", 0) == 0) {
        log::warn("server warning", {{"message", text}});
    } else {
        log::info("server notice", {{"message", text}});
    }
}

}  // namespace

ConnectionOptions ConnectionOptions::with_dbname(const std::string& name) const {
    ConnectionOptions copy = *this;
    copy.dbname_override = name;
    return copy;
}

std::optional<std::string> Result::get_optional(int row, int column) const {
    if (is_null(row, column)) {
        return std::nullopt;
    }
    return get(row, column);
}

std::string describe_target(PGconn* conn) {
    auto text = [](const char* value) { return value == nullptr ? std::string() : value; };
    return fmt::format("host={} port={} dbname={} user={}", text(PQhost(conn)), text(PQport(conn)),
                       text(PQdb(conn)), text(PQuser(conn)));
}

namespace {

// The keyword/value arrays for libpq. Order gives the precedence: the
// operator's PG* variables as libpq resolved them, then POSTGRES_* variables,
// then a conninfo/URI in dbname (expanded in place), then flags; for the same
// keyword the last wins.
struct Params {
    std::vector<const char*> keywords;
    std::vector<const char*> values;
    std::list<std::string> owned;  // stable addresses for values built here
};

Params connection_params(const ConnectionOptions& options, const std::string& application_name) {
    Params p;
    if (options.isolated) {
        // Not even ~/.pgpass: a password pgward did not give is never sent.
        p.keywords.push_back("passfile");
        p.values.push_back("/nonexistent/pgward-no-passfile");
    } else {
        const bool named = options.dbname || options.dbname_override;
        for (const auto& [keyword, value] : operator_connection_defaults()) {
            // libpq expands only the first dbname as a conninfo: the
            // operator's PGDATABASE (or service's dbname) must not take that
            // place from a POSTGRES_DB that is one, and is a name itself.
            if (keyword == "dbname") {
                if (named) {
                    continue;
                }
                p.owned.push_back("dbname=" + quote_conninfo_value(value));
                p.keywords.push_back("dbname");
                p.values.push_back(p.owned.back().c_str());
                continue;
            }
            p.keywords.push_back(keyword.c_str());
            p.values.push_back(value.c_str());
        }
    }
    auto add = [&](const char* key, const std::optional<ConnectionOptions::Setting>& setting,
                   bool from_flag) {
        if (setting && setting->from_flag == from_flag) {
            p.keywords.push_back(key);
            p.values.push_back(setting->value.c_str());
        }
    };
    add("host", options.host, false);
    add("port", options.port, false);
    add("user", options.user, false);
    if (options.dbname) {
        p.keywords.push_back("dbname");
        p.values.push_back(options.dbname->value.c_str());
    } else if (options.dbname_override) {
        // The first dbname is expanded as a conninfo; keep a name a name.
        p.owned.push_back("dbname=" + quote_conninfo_value(*options.dbname_override));
        p.keywords.push_back("dbname");
        p.values.push_back(p.owned.back().c_str());
    }
    add("host", options.host, true);
    add("port", options.port, true);
    add("user", options.user, true);
    if (options.dbname && options.dbname_override) {
        // A second dbname is never expanded: it just replaces the name.
        p.keywords.push_back("dbname");
        p.values.push_back(options.dbname_override->c_str());
    }
    if (options.password) {
        p.keywords.push_back("password");
        p.values.push_back(options.password->c_str());
    }
    if (options.replication) {
        p.keywords.push_back("replication");
        p.values.push_back(options.replication->c_str());
    }
    p.keywords.push_back("application_name");
    p.values.push_back(application_name.c_str());
    p.keywords.push_back(nullptr);
    p.values.push_back(nullptr);
    return p;
}

}  // namespace

std::string resolve_database_name(const ConnectionOptions& options) {
    // libpq applies its defaults (PGDATABASE, the user name...) when a
    // connection starts; ask it, then drop the attempt.
    std::string app = "pgward";
    Params p = connection_params(options, app);
    PGconn* conn = PQconnectStartParams(p.keywords.data(), p.values.data(), 1);
    std::string name = conn != nullptr && PQdb(conn) != nullptr ? PQdb(conn) : "";
    PQfinish(conn);
    return name;
}

bool ping(const ConnectionOptions& options) {
    // Params points into this string: it must outlive the call.
    const std::string application_name = "pgward";
    Params p = connection_params(options, application_name);
    return PQpingParams(p.keywords.data(), p.values.data(), 1) == PQPING_OK;
}

Connection Connection::open(const ConnectionOptions& options, const std::string& application_name) {
    Params p = connection_params(options, application_name);
    PGconn* raw = PQconnectdbParams(p.keywords.data(), p.values.data(), 1);
    if (raw == nullptr) {
        throw failure("cannot connect: out of memory");
    }
    Connection conn(raw, options.isolated);
    PQsetNoticeProcessor(raw, &relay_notice, nullptr);
    if (PQstatus(raw) != CONNECTION_OK) {
        std::string message = one_line(PQerrorMessage(raw));
        throw failure(fmt::format("cannot connect to {}: {}", describe_target(raw), message),
                      connection_hint(message));
    }
    return conn;
}

Result Connection::exec(const std::string& sql, const std::vector<std::string>& params) {
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const std::string& p : params) {
        values.push_back(p.c_str());
    }
    // Without parameters, the simple protocol: it accepts several statements.
    PGresult* raw = params.empty()
                        ? PQexec(conn_.get(), sql.c_str())
                        : PQexecParams(conn_.get(), sql.c_str(), static_cast<int>(values.size()),
                                       nullptr, values.data(), nullptr, nullptr, 0);
    Result result(raw);
    ExecStatusType status = PQresultStatus(raw);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
        const char* sqlstate = raw == nullptr ? nullptr : PQresultErrorField(raw, PG_DIAG_SQLSTATE);
        std::string message =
            one_line(raw == nullptr ? PQerrorMessage(conn_.get()) : PQresultErrorMessage(raw));
        throw failure(fmt::format("query failed on {}: {}", target(), message),
                      query_hint(sqlstate));
    }
    return result;
}

std::optional<std::string> Connection::query_value(const std::string& sql,
                                                   const std::vector<std::string>& params) {
    Result result = exec(sql, params);
    if (result.rows() != 1 || result.columns() != 1) {
        throw failure(fmt::format("query returned {} rows and {} columns, expected one value: {}",
                                  result.rows(), result.columns(), sql));
    }
    return result.get_optional(0, 0);
}

std::string Connection::server_version_text() const {
    const char* text = PQparameterStatus(conn_.get(), "server_version");
    return text == nullptr ? std::string() : text;
}

std::string Connection::target() const {
    return describe_target(conn_.get());
}

namespace {

// libpq marks the options whose value is a secret ("Password field - hide
// value"): password, sslpassword, and what later versions add.
bool is_secret(const PQconninfoOption& option) {
    return option.dispchar != nullptr && std::strchr(option.dispchar, '*') != nullptr;
}

constexpr const char* kChildService = "pgward";

}  // namespace

// A libpq service file holding the secrets a child tool needs, in a 0700
// directory of its own; both are removed with the last connection using it.
class Connection::SecretFile {
  public:
    explicit SecretFile(const std::vector<std::pair<std::string, std::string>>& settings) {
        // libpq reads a service file line by line (at most 1023 bytes each,
        // trimmed of trailing white space): a value it would change is refused
        // rather than handed over changed (or put on a command line).
        std::string text = std::string("[") + kChildService + "]\n";
        for (const auto& [key, value] : settings) {
            bool representable = value.find('\n') == std::string::npos &&
                                 !std::isspace(static_cast<unsigned char>(value.back())) &&
                                 key.size() + value.size() + 2 < 1023;
            if (!representable) {
                throw failure(
                    fmt::format("the connection's {} cannot be handed to pg_dump/pg_restore: it "
                                "holds a newline, ends in white space or is over 1000 bytes, which "
                                "a libpq service file cannot carry",
                                key),
                    "a secret is never put on a child's command line; change the secret");
            }
            text += key + "=" + value + "\n";
        }
        const char* tmp = std::getenv("TMPDIR");
        std::string pattern =
            std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/pgward-conn-XXXXXX";
        if (::mkdtemp(pattern.data()) == nullptr) {
            throw os_error("cannot create a private directory", pattern, errno,
                           "make TMPDIR (or /tmp) writable for the user pgward runs as");
        }
        dir_ = pattern;
        path_ = dir_ + "/pg_service.conf";
        int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) {
            int err = errno;
            ::rmdir(dir_.c_str());
            throw os_error("cannot create", path_, err);
        }
        try {
            write_all(fd, text.data(), text.size(), path_);
        } catch (...) {
            ::close(fd);
            remove();
            throw;
        }
        if (::close(fd) != 0) {
            int err = errno;
            remove();
            throw os_error("cannot close", path_, err);
        }
    }
    SecretFile(const SecretFile&) = delete;
    SecretFile& operator=(const SecretFile&) = delete;
    ~SecretFile() { remove(); }

    const std::string& path() const { return path_; }

  private:
    void remove() const {
        if (::unlink(path_.c_str()) != 0 && errno != ENOENT) {
            log::warn("cannot remove the connection's secrets file",
                      {{"file", path_}, {"error", std::strerror(errno)}});
        }
        if (::rmdir(dir_.c_str()) != 0 && errno != ENOENT) {
            log::warn("cannot remove the connection's secrets directory",
                      {{"dir", dir_}, {"error", std::strerror(errno)}});
        }
    }

    std::string dir_;
    std::string path_;
};

const Connection::SecretFile* Connection::child_secrets() const {
    if (secrets_checked_) {
        return secrets_.get();
    }
    PQconninfoOption* options = PQconninfo(conn_.get());
    if (options == nullptr) {
        throw failure("cannot read the connection's settings: out of memory");
    }
    std::vector<std::pair<std::string, std::string>> secrets;
    for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
        // The password goes to the child's environment (PGPASSWORD).
        if (is_secret(*o) && o->val != nullptr && *o->val != '\0' &&
            std::string_view(o->keyword) != "password") {
            secrets.emplace_back(o->keyword, o->val);
        }
    }
    PQconninfoFree(options);
    if (!secrets.empty()) {
        secrets_ = std::make_shared<const SecretFile>(secrets);
    }
    secrets_checked_ = true;
    return secrets_.get();
}

std::string Connection::child_conninfo() const {
    const SecretFile* secrets = child_secrets();
    PQconninfoOption* options = PQconninfo(conn_.get());
    if (options == nullptr) {
        throw failure("cannot read the connection's settings: out of memory");
    }
    std::string out;
    for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
        std::string key = o->keyword;
        // No secret ever: a command line is readable by every local user.
        if (o->val == nullptr || *o->val == '\0' || is_secret(*o) || key == "host" ||
            key == "hostaddr" || key == "port" || key == "application_name") {
            continue;
        }
        // The operator's service is spelled out below; ours names the secrets.
        if (secrets != nullptr && key == "service") {
            continue;
        }
        // Only what differs from what the child would pick by itself (its
        // compiled default or the PG* variable it inherits): an older
        // client's libpq rejects option names it does not know.
        if (o->compiled != nullptr && std::string_view(o->val) == o->compiled) {
            continue;
        }
        if (o->envvar != nullptr && !isolated_) {
            std::optional<std::string> inherited = operator_variable(o->envvar);
            if (inherited && *inherited == o->val) {
                continue;
            }
        }
        out += key + "=" + quote_conninfo_value(o->val) + " ";
    }
    PQconninfoFree(options);
    // The host and port libpq actually connected to, so the child reaches
    // the very server the preflight checked (not another of a host list).
    out += "host=" + quote_conninfo_value(PQhost(conn_.get())) + " ";
    if (const char* addr = PQhostaddr(conn_.get()); addr != nullptr && *addr != '\0') {
        out += "hostaddr=" + quote_conninfo_value(addr) + " ";
    }
    out += "port=" + quote_conninfo_value(PQport(conn_.get()));
    if (secrets != nullptr) {
        out += std::string(" service=") + kChildService;
    }
    return out;
}

std::vector<std::pair<std::string, std::string>> Connection::child_environment() const {
    const SecretFile* secrets = child_secrets();
    std::vector<std::pair<std::string, std::string>> env;
    if (!isolated_) {
        env = operator_variables();
    }
    if (secrets != nullptr) {
        // The service the conninfo names is ours: the operator's service file
        // and service (already spelled out in the conninfo) make way for it.
        std::erase_if(env, [](const auto& variable) {
            return variable.first == "PGSERVICEFILE" || variable.first == "PGSERVICE";
        });
        env.emplace_back("PGSERVICEFILE", secrets->path());
    }
    return env;
}

namespace {

// PQescapeLiteral and PQescapeIdentifier share their contract: a malloc'd
// quoted copy, or null with the reason in the connection's error message.
std::string escape_with(PGconn* conn, char* (*escape)(PGconn*, const char*, size_t),
                        const std::string& text, const char* what, const std::string& target) {
    if (text.find('\0') != std::string::npos) {
        throw failure(fmt::format("a SQL {} for {} holds a NUL byte", what, target));
    }
    char* quoted = escape(conn, text.data(), text.size());
    if (quoted == nullptr) {
        throw failure(fmt::format("cannot quote a SQL {} for {}: {}", what, target,
                                  one_line(PQerrorMessage(conn))));
    }
    std::string out(quoted);
    PQfreemem(quoted);
    return out;
}

}  // namespace

std::string Connection::escape_literal(const std::string& value) const {
    return escape_with(conn_.get(), PQescapeLiteral, value, "literal", target());
}

std::string Connection::escape_identifier(const std::string& name) const {
    return escape_with(conn_.get(), PQescapeIdentifier, name, "identifier", target());
}

std::optional<std::string> Connection::password_used() const {
    const char* pass = PQpass(conn_.get());
    if (pass == nullptr || *pass == '\0') {
        return std::nullopt;
    }
    return std::string(pass);
}

std::string quote_identifier(const std::string& name) {
    std::string out = "\"";
    for (char c : name) {
        if (c == '"') {
            out += '"';
        }
        out += c;
    }
    out += '"';
    return out;
}

std::string quote_literal(const std::string& value) {
    bool backslash = value.find('\\') != std::string::npos;
    std::string out = backslash ? "E'" : "'";
    for (char c : value) {
        if (c == '\'' || (backslash && c == '\\')) {
            out += c;
        }
        out += c;
    }
    out += '\'';
    return out;
}

std::string quote_conninfo_value(const std::string& value) {
    std::string out = "'";
    for (char c : value) {
        if (c == '\'' || c == '\\') {
            out += '\\';
        }
        out += c;
    }
    out += '\'';
    return out;
}

}  // namespace pgward::pg
