#include "pg/connection.hpp"

#include <fmt/format.h>

#include <cstdlib>
#include <list>
#include <string_view>

#include "pg/environment.hpp"
#include "util/error.hpp"
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
        for (const auto& [keyword, value] : operator_connection_defaults()) {
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

std::string Connection::child_conninfo() const {
    PQconninfoOption* options = PQconninfo(conn_.get());
    if (options == nullptr) {
        throw failure("cannot read the connection's settings: out of memory");
    }
    std::string out;
    for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
        std::string key = o->keyword;
        if (o->val == nullptr || *o->val == '\0' || key == "password" || key == "host" ||
            key == "hostaddr" || key == "port" || key == "application_name") {
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
    return out;
}

std::vector<std::pair<std::string, std::string>> Connection::child_environment() const {
    if (isolated_) {
        return {};
    }
    return operator_variables();
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
