"""Orthanc's error table (codes, names, HTTP statuses, descriptions).

These are facts about Orthanc's observable behaviour: the REST API reports them in the
``OrthancError``/``OrthancStatus``/``HttpStatus`` fields of error bodies, so clients that
switch on them keep working against orthanc_py. Codes 44 and 45 post-date Orthanc 1.10.1
but are kept so the table matches current Orthanc.
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class ErrorCode(Enum):
    """One Orthanc error: ``.code``, ``.orthanc_name``, ``.http_status``, ``.message``.

    ``http_status`` is 500 wherever Orthanc declares none, as Orthanc itself does.
    """

    code: int
    orthanc_name: str
    http_status: int
    message: str

    # Generic errors
    INTERNAL_ERROR = (-1, "InternalError", 500, "Internal error")
    SUCCESS = (0, "Success", 200, "Success")
    PLUGIN = (1, "Plugin", 500, "Error encountered within the plugin engine")
    NOT_IMPLEMENTED = (2, "NotImplemented", 500, "Not implemented yet")
    PARAMETER_OUT_OF_RANGE = (3, "ParameterOutOfRange", 400, "Parameter out of range")
    NOT_ENOUGH_MEMORY = (4, "NotEnoughMemory", 500, "The server hosting Orthanc is running out of memory")
    BAD_PARAMETER_TYPE = (5, "BadParameterType", 400, "Bad type for a parameter")
    BAD_SEQUENCE_OF_CALLS = (6, "BadSequenceOfCalls", 500, "Bad sequence of calls")
    INEXISTENT_ITEM = (7, "InexistentItem", 404, "Accessing an inexistent item")
    BAD_REQUEST = (8, "BadRequest", 400, "Bad request")
    NETWORK_PROTOCOL = (9, "NetworkProtocol", 500, "Error in the network protocol")
    SYSTEM_COMMAND = (10, "SystemCommand", 500, "Error while calling a system command")
    DATABASE = (11, "Database", 500, "Error with the database engine")
    URI_SYNTAX = (12, "UriSyntax", 400, "Badly formatted URI")
    INEXISTENT_FILE = (13, "InexistentFile", 404, "Inexistent file")
    CANNOT_WRITE_FILE = (14, "CannotWriteFile", 500, "Cannot write to file")
    BAD_FILE_FORMAT = (15, "BadFileFormat", 400, "Bad file format")
    TIMEOUT = (16, "Timeout", 500, "Timeout")
    UNKNOWN_RESOURCE = (17, "UnknownResource", 404, "Unknown resource")
    INCOMPATIBLE_DATABASE_VERSION = (
        18,
        "IncompatibleDatabaseVersion",
        500,
        "Incompatible version of the database",
    )
    FULL_STORAGE = (19, "FullStorage", 500, "The file storage is full")
    CORRUPTED_FILE = (20, "CorruptedFile", 500, "Corrupted file (e.g. inconsistent MD5 hash)")
    INEXISTENT_TAG = (21, "InexistentTag", 404, "Inexistent tag")
    READ_ONLY = (22, "ReadOnly", 500, "Cannot modify a read-only data structure")
    INCOMPATIBLE_IMAGE_FORMAT = (23, "IncompatibleImageFormat", 500, "Incompatible format of the images")
    INCOMPATIBLE_IMAGE_SIZE = (24, "IncompatibleImageSize", 500, "Incompatible size of the images")
    SHARED_LIBRARY = (25, "SharedLibrary", 500, "Error while using a shared library (plugin)")
    UNKNOWN_PLUGIN_SERVICE = (26, "UnknownPluginService", 500, "Plugin invoking an unknown service")
    UNKNOWN_DICOM_TAG = (27, "UnknownDicomTag", 500, "Unknown DICOM tag")
    BAD_JSON = (28, "BadJson", 400, "Cannot parse a JSON document")
    UNAUTHORIZED = (29, "Unauthorized", 401, "Bad credentials were provided to an HTTP request")
    BAD_FONT = (30, "BadFont", 500, "Badly formatted font file")
    DATABASE_PLUGIN = (
        31,
        "DatabasePlugin",
        500,
        "The plugin implementing a custom database back-end does not fulfill the proper interface",
    )
    STORAGE_AREA_PLUGIN = (
        32,
        "StorageAreaPlugin",
        500,
        "Error in the plugin implementing a custom storage area",
    )
    EMPTY_REQUEST = (33, "EmptyRequest", 500, "The request is empty")
    NOT_ACCEPTABLE = (
        34,
        "NotAcceptable",
        406,
        "Cannot send a response which is acceptable according to the Accept HTTP header",
    )
    NULL_POINTER = (35, "NullPointer", 500, "Cannot handle a NULL pointer")
    DATABASE_UNAVAILABLE = (
        36,
        "DatabaseUnavailable",
        503,
        "The database is currently not available (probably a transient situation)",
    )
    CANCELED_JOB = (37, "CanceledJob", 500, "This job was canceled")
    BAD_GEOMETRY = (38, "BadGeometry", 500, "Geometry error encountered in Stone")
    SSL_INITIALIZATION = (
        39,
        "SslInitialization",
        500,
        "Cannot initialize SSL encryption, check out your certificates",
    )
    DISCONTINUED_ABI = (
        40,
        "DiscontinuedAbi",
        500,
        "Calling a function that has been removed from the Orthanc Framework",
    )
    BAD_RANGE = (41, "BadRange", 416, "Incorrect range request")
    DATABASE_CANNOT_SERIALIZE = (
        42,
        "DatabaseCannotSerialize",
        503,
        "Database could not serialize access due to concurrent update, the transaction should be retried",
    )
    REVISION = (
        43,
        "Revision",
        409,
        "A bad revision number was provided, which might indicate conflict between multiple writers",
    )
    MAIN_DICOM_TAGS_MULTIPLY_DEFINED = (
        44,
        "MainDicomTagsMultiplyDefined",
        500,
        "A main DICOM Tag has been defined multiple times for the same resource level",
    )  # added after 1.10.1
    FORBIDDEN_ACCESS = (45, "ForbiddenAccess", 403, "Access to a resource is forbidden")  # added after 1.10.1

    # SQLite engine
    SQLITE_NOT_OPENED = (1000, "SQLiteNotOpened", 500, "SQLite: The database is not opened")
    SQLITE_ALREADY_OPENED = (1001, "SQLiteAlreadyOpened", 500, "SQLite: Connection is already open")
    SQLITE_CANNOT_OPEN = (1002, "SQLiteCannotOpen", 500, "SQLite: Unable to open the database")
    SQLITE_STATEMENT_ALREADY_USED = (
        1003,
        "SQLiteStatementAlreadyUsed",
        500,
        "SQLite: This cached statement is already being referred to",
    )
    SQLITE_EXECUTE = (1004, "SQLiteExecute", 500, "SQLite: Cannot execute a command")
    SQLITE_ROLLBACK_WITHOUT_TRANSACTION = (
        1005,
        "SQLiteRollbackWithoutTransaction",
        500,
        "SQLite: Rolling back a nonexistent transaction (have you called Begin()?)",
    )
    SQLITE_COMMIT_WITHOUT_TRANSACTION = (
        1006,
        "SQLiteCommitWithoutTransaction",
        500,
        "SQLite: Committing a nonexistent transaction",
    )
    SQLITE_REGISTER_FUNCTION = (1007, "SQLiteRegisterFunction", 500, "SQLite: Unable to register a function")
    SQLITE_FLUSH = (1008, "SQLiteFlush", 500, "SQLite: Unable to flush the database")
    SQLITE_CANNOT_RUN = (1009, "SQLiteCannotRun", 500, "SQLite: Cannot run a cached statement")
    SQLITE_CANNOT_STEP = (1010, "SQLiteCannotStep", 500, "SQLite: Cannot step over a cached statement")
    SQLITE_BIND_OUT_OF_RANGE = (
        1011,
        "SQLiteBindOutOfRange",
        500,
        "SQLite: Bing a value while out of range (serious error)",
    )
    SQLITE_PREPARE_STATEMENT = (
        1012,
        "SQLitePrepareStatement",
        500,
        "SQLite: Cannot prepare a cached statement",
    )
    SQLITE_TRANSACTION_ALREADY_STARTED = (
        1013,
        "SQLiteTransactionAlreadyStarted",
        500,
        "SQLite: Beginning the same transaction twice",
    )
    SQLITE_TRANSACTION_COMMIT = (
        1014,
        "SQLiteTransactionCommit",
        500,
        "SQLite: Failure when committing the transaction",
    )
    SQLITE_TRANSACTION_BEGIN = (1015, "SQLiteTransactionBegin", 500, "SQLite: Cannot start a transaction")

    # Orthanc-specific errors
    DIRECTORY_OVER_FILE = (
        2000,
        "DirectoryOverFile",
        500,
        "The directory to be created is already occupied by a regular file",
    )
    FILE_STORAGE_CANNOT_WRITE = (
        2001,
        "FileStorageCannotWrite",
        500,
        "Unable to create a subdirectory or a file in the file storage",
    )
    DIRECTORY_EXPECTED = (2002, "DirectoryExpected", 500, "The specified path does not point to a directory")
    HTTP_PORT_IN_USE = (
        2003,
        "HttpPortInUse",
        500,
        "The TCP port of the HTTP server is privileged or already in use",
    )
    DICOM_PORT_IN_USE = (
        2004,
        "DicomPortInUse",
        500,
        "The TCP port of the DICOM server is privileged or already in use",
    )
    BAD_HTTP_STATUS_IN_REST = (
        2005,
        "BadHttpStatusInRest",
        500,
        "This HTTP status is not allowed in a REST API",
    )
    REGULAR_FILE_EXPECTED = (
        2006,
        "RegularFileExpected",
        500,
        "The specified path does not point to a regular file",
    )
    PATH_TO_EXECUTABLE = (2007, "PathToExecutable", 500, "Unable to get the path to the executable")
    MAKE_DIRECTORY = (2008, "MakeDirectory", 500, "Cannot create a directory")
    BAD_APPLICATION_ENTITY_TITLE = (
        2009,
        "BadApplicationEntityTitle",
        500,
        "An application entity title (AET) cannot be empty or be longer than 16 characters",
    )
    NO_C_FIND_HANDLER = (2010, "NoCFindHandler", 500, "No request handler factory for DICOM C-FIND SCP")
    NO_C_MOVE_HANDLER = (2011, "NoCMoveHandler", 500, "No request handler factory for DICOM C-MOVE SCP")
    NO_C_STORE_HANDLER = (2012, "NoCStoreHandler", 500, "No request handler factory for DICOM C-STORE SCP")
    NO_APPLICATION_ENTITY_FILTER = (2013, "NoApplicationEntityFilter", 500, "No application entity filter")
    NO_SOP_CLASS_OR_INSTANCE = (
        2014,
        "NoSopClassOrInstance",
        500,
        "DicomUserConnection: Unable to find the SOP class and instance",
    )
    NO_PRESENTATION_CONTEXT = (
        2015,
        "NoPresentationContext",
        500,
        "DicomUserConnection: No acceptable presentation context for modality",
    )
    DICOM_FIND_UNAVAILABLE = (
        2016,
        "DicomFindUnavailable",
        500,
        "DicomUserConnection: The C-FIND command is not supported by the remote SCP",
    )
    DICOM_MOVE_UNAVAILABLE = (
        2017,
        "DicomMoveUnavailable",
        500,
        "DicomUserConnection: The C-MOVE command is not supported by the remote SCP",
    )
    CANNOT_STORE_INSTANCE = (2018, "CannotStoreInstance", 500, "Cannot store an instance")
    CREATE_DICOM_NOT_STRING = (
        2019,
        "CreateDicomNotString",
        400,
        "Only string values are supported when creating DICOM instances",
    )
    CREATE_DICOM_OVERRIDE_TAG = (
        2020,
        "CreateDicomOverrideTag",
        400,
        "Trying to override a value inherited from a parent module",
    )
    CREATE_DICOM_USE_CONTENT = (
        2021,
        "CreateDicomUseContent",
        400,
        'Use "Content" to inject an image into a new DICOM instance',
    )
    CREATE_DICOM_NO_PAYLOAD = (
        2022,
        "CreateDicomNoPayload",
        400,
        "No payload is present for one instance in the series",
    )
    CREATE_DICOM_USE_DATA_URI_SCHEME = (
        2023,
        "CreateDicomUseDataUriScheme",
        400,
        "The payload of the DICOM instance must be specified according to Data URI scheme",
    )
    CREATE_DICOM_BAD_PARENT = (
        2024,
        "CreateDicomBadParent",
        400,
        "Trying to attach a new DICOM instance to an inexistent resource",
    )
    CREATE_DICOM_PARENT_IS_INSTANCE = (
        2025,
        "CreateDicomParentIsInstance",
        400,
        "Trying to attach a new DICOM instance to an instance (must be a series, study or patient)",
    )
    CREATE_DICOM_PARENT_ENCODING = (
        2026,
        "CreateDicomParentEncoding",
        500,
        "Unable to get the encoding of the parent resource",
    )
    UNKNOWN_MODALITY = (2027, "UnknownModality", 500, "Unknown modality")
    BAD_JOB_ORDERING = (2028, "BadJobOrdering", 500, "Bad ordering of filters in a job")
    JSON_TO_LUA_TABLE = (2029, "JsonToLuaTable", 500, "Cannot convert the given JSON object to a Lua table")
    CANNOT_CREATE_LUA = (2030, "CannotCreateLua", 500, "Cannot create the Lua context")
    CANNOT_EXECUTE_LUA = (2031, "CannotExecuteLua", 500, "Cannot execute a Lua command")
    LUA_ALREADY_EXECUTED = (
        2032,
        "LuaAlreadyExecuted",
        500,
        "Arguments cannot be pushed after the Lua function is executed",
    )
    LUA_BAD_OUTPUT = (
        2033,
        "LuaBadOutput",
        500,
        "The Lua function does not give the expected number of outputs",
    )
    NOT_LUA_PREDICATE = (
        2034,
        "NotLuaPredicate",
        500,
        "The Lua function is not a predicate (only true/false outputs allowed)",
    )
    LUA_RETURNS_NO_STRING = (2035, "LuaReturnsNoString", 500, "The Lua function does not return a string")
    STORAGE_AREA_ALREADY_REGISTERED = (
        2036,
        "StorageAreaAlreadyRegistered",
        500,
        "Another plugin has already registered a custom storage area",
    )
    DATABASE_BACKEND_ALREADY_REGISTERED = (
        2037,
        "DatabaseBackendAlreadyRegistered",
        500,
        "Another plugin has already registered a custom database back-end",
    )
    DATABASE_NOT_INITIALIZED = (
        2038,
        "DatabaseNotInitialized",
        500,
        "Plugin trying to call the database during its initialization",
    )
    SSL_DISABLED = (2039, "SslDisabled", 500, "Orthanc has been built without SSL support")
    CANNOT_ORDER_SLICES = (2040, "CannotOrderSlices", 500, "Unable to order the slices of the series")
    NO_WORKLIST_HANDLER = (
        2041,
        "NoWorklistHandler",
        500,
        "No request handler factory for DICOM C-Find Modality SCP",
    )
    ALREADY_EXISTING_TAG = (
        2042,
        "AlreadyExistingTag",
        500,
        "Cannot override the value of a tag that already exists",
    )
    NO_STORAGE_COMMITMENT_HANDLER = (
        2043,
        "NoStorageCommitmentHandler",
        500,
        "No request handler factory for DICOM N-ACTION SCP (storage commitment)",
    )
    NO_C_GET_HANDLER = (2044, "NoCGetHandler", 500, "No request handler factory for DICOM C-GET SCP")

    # HTTP-related errors
    UNSUPPORTED_MEDIA_TYPE = (3000, "UnsupportedMediaType", 415, "Unsupported media type")

    def __init__(self, code: int, orthanc_name: str, http_status: int, message: str) -> None:
        self.code = code
        self.orthanc_name = orthanc_name
        self.http_status = http_status
        self.message = message

    @classmethod
    def from_code(cls, code: int) -> ErrorCode:
        """Member for Orthanc's numeric ``code`` (e.g. from ``OrthancStatus``); ValueError if unknown."""
        try:
            return _BY_CODE[code]
        except KeyError:
            raise ValueError(f"unknown Orthanc error code: {code}") from None

    @classmethod
    def from_name(cls, orthanc_name: str) -> ErrorCode:
        """Member for Orthanc's CamelCase name (e.g. "UnknownResource"); ValueError if unknown."""
        try:
            return _BY_NAME[orthanc_name]
        except KeyError:
            raise ValueError(f"unknown Orthanc error name: {orthanc_name}") from None


_BY_CODE: dict[int, ErrorCode] = {member.code: member for member in ErrorCode}
_BY_NAME: dict[str, ErrorCode] = {member.orthanc_name: member for member in ErrorCode}


class OrthancError(Exception):
    """An Orthanc-level failure; the REST layer turns it into Orthanc's JSON error body.

    ``details`` is the free-text explanation Orthanc adds (its ``Details`` field);
    ``http_status`` overrides the code's default status for the few routes where Orthanc
    answers with another one.
    """

    def __init__(
        self,
        code: ErrorCode,
        details: str | None = None,
        *,
        http_status: int | None = None,
        payload: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(details if details is not None else code.message)
        self.code = code
        self.details = details
        self.http_status = http_status if http_status is not None else code.http_status
        self.payload = payload
        """Orthanc 1.12.10's "ErrorPayload" ({"Type", "Content"}): what a DICOM network failure
        knows beyond its message (the DIMSE status, the retrieve's details)."""

    @property
    def message(self) -> str:
        """Orthanc's description for the code (its ``Message``/``OrthancError`` text)."""
        return self.code.message

    def __repr__(self) -> str:
        return f"OrthancError({self.code.orthanc_name}, {self.details!r}, http_status={self.http_status})"


def read_only_refused() -> OrthancError:
    """The error of any change attempted while the server runs with "ReadOnly": true (Orthanc
    1.12.5): the index and the storage are served, never modified."""
    return OrthancError(
        ErrorCode.READ_ONLY, "Orthanc runs in ReadOnly mode: the index and the storage cannot be modified"
    )
