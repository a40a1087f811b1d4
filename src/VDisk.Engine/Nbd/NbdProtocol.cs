// Wire constants of the NBD protocol (NetworkBlockDevice/nbd doc/proto.md): the "Fixed newstyle negotiation"
// magics and handshake flags, "Option types", "Option reply types", "Transmission flags", "Request message",
// "Simple reply message", "Structured reply chunk message", "Request types", "Error values" and the
// "base:allocation metadata context". Every number on the wire is big-endian.
namespace VDisk.Engine.Nbd;

/// <summary>Numbers the NBD protocol puts on the wire.</summary>
internal static class NbdProtocol
{
    // "Newstyle negotiation": the server greeting.
    public const ulong InitMagic = 0x4e42444d41474943;   // "NBDMAGIC"
    public const ulong OptionMagic = 0x49484156454F5054; // "IHAVEOPT"
    public const ulong OptionReplyMagic = 0x3e889045565a9;

    // Handshake flags (server) and client flags.
    public const ushort FlagFixedNewstyle = 1 << 0;
    public const ushort FlagNoZeroes = 1 << 1;
    public const uint ClientFlagFixedNewstyle = 1 << 0;
    public const uint ClientFlagNoZeroes = 1 << 1;

    // "Option types".
    public const uint OptExportName = 1;
    public const uint OptAbort = 2;
    public const uint OptList = 3;
    public const uint OptStartTls = 5;
    public const uint OptInfo = 6;
    public const uint OptGo = 7;
    public const uint OptStructuredReply = 8;
    public const uint OptListMetaContext = 9;
    public const uint OptSetMetaContext = 10;

    // "Option reply types".
    public const uint RepAck = 1;
    public const uint RepServer = 2;
    public const uint RepInfo = 3;
    public const uint RepMetaContext = 4;
    public const uint RepErrUnsup = 0x80000001;
    public const uint RepErrPolicy = 0x80000002;
    public const uint RepErrInvalid = 0x80000003;
    public const uint RepErrPlatform = 0x80000004;
    public const uint RepErrTlsReqd = 0x80000005;
    public const uint RepErrUnknown = 0x80000006;
    public const uint RepErrShutdown = 0x80000007;
    public const uint RepErrTooBig = 0x80000009;

    // NBD_REP_INFO types.
    public const ushort InfoExport = 0;
    public const ushort InfoName = 1;
    public const ushort InfoDescription = 2;
    public const ushort InfoBlockSize = 3;

    // "Transmission flags".
    public const ushort TxHasFlags = 1 << 0;
    public const ushort TxReadOnly = 1 << 1;
    public const ushort TxSendFlush = 1 << 2;
    public const ushort TxSendFua = 1 << 3;
    public const ushort TxSendTrim = 1 << 5;
    public const ushort TxSendWriteZeroes = 1 << 6;
    public const ushort TxSendDf = 1 << 7;
    public const ushort TxCanMultiConn = 1 << 8;
    public const ushort TxSendFastZero = 1 << 11;

    // "Request message" and "Request types".
    public const uint RequestMagic = 0x25609513;
    public const int RequestSize = 28;
    public const ushort CmdRead = 0;
    public const ushort CmdWrite = 1;
    public const ushort CmdDisc = 2;
    public const ushort CmdFlush = 3;
    public const ushort CmdTrim = 4;
    public const ushort CmdCache = 5;
    public const ushort CmdWriteZeroes = 6;
    public const ushort CmdBlockStatus = 7;

    // "Command flags".
    public const ushort CmdFlagFua = 1 << 0;
    public const ushort CmdFlagNoHole = 1 << 1;
    public const ushort CmdFlagDf = 1 << 2;
    public const ushort CmdFlagReqOne = 1 << 3;
    public const ushort CmdFlagFastZero = 1 << 4;

    // "Simple reply message" and "Structured reply chunk message".
    public const uint SimpleReplyMagic = 0x67446698;
    public const int SimpleReplySize = 16;
    public const uint StructuredReplyMagic = 0x668e33ef;
    public const int StructuredHeaderSize = 20;
    public const ushort ReplyFlagDone = 1 << 0;
    public const ushort ReplyTypeNone = 0;
    public const ushort ReplyTypeOffsetData = 1;
    public const ushort ReplyTypeOffsetHole = 2;
    public const ushort ReplyTypeBlockStatus = 5;
    public const ushort ReplyTypeError = (1 << 15) + 1;

    // "Error values".
    public const uint EPERM = 1;
    public const uint EIO = 5;
    public const uint ENOMEM = 12;
    public const uint EINVAL = 22;
    public const uint ENOSPC = 28;
    public const uint EOVERFLOW = 75;
    public const uint ENOTSUP = 95;
    public const uint ESHUTDOWN = 108;

    // "base:allocation metadata context".
    public const string BaseAllocation = "base:allocation";
    public const uint StateHole = 1 << 0;
    public const uint StateZero = 1 << 1;
    /// <summary>The id this server gives the base:allocation context.</summary>
    public const uint BaseAllocationId = 1;

    /// <summary>The largest READ or WRITE payload served; bigger requests close the connection.</summary>
    public const int MaxPayload = 32 << 20;
    /// <summary>The largest option payload taken during the handshake.</summary>
    public const int MaxOptionLength = 64 << 10;
    /// <summary>The longest export name (proto.md: "at most 4096 bytes").</summary>
    public const int MaxNameLength = 4096;
}
