/*
 * IDENTIFY and AUTH (protocol/identify.c): the client's IDENTIFY command,
 * the parsers of the broker's answers, and the broker's side of IDENTIFY.
 *
 * Ground truth is the nsqd 1.3.0 capture: every distinct IDENTIFY of the
 * conformance vectors is in the table below, byte for byte, with nsqd's
 * answer.  The rest pins nsqd's rules (ranges, order of checks, carry-over)
 * and Go's encoding/json rules, which nsqd decodes the body with.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nsq/broker.h"

typedef struct vec_identify {
    const char *name;
    bool tls_enabled;  /* the case's nsqd had a certificate */
    bool auth_enabled; /* the case's nsqd had --auth-http-address */
    const char *send_hex;
    bool encodable; /* the body has exactly nsq_cmd_identify's fields */
    nsq_identify_t id;
    int reply_type; /* NSQ_FRAME_RESPONSE or NSQ_FRAME_ERROR */
    const char *reply;
} vec_identify_t;

/* Generated from the vectors: every distinct IDENTIFY a case sends (with
 * the broker configuration of its case) and the first frame nsqd answered. */
static const vec_identify_t vec_identify[] = {
    {"handshake_identify_bad_json",
     false,
     false,
     "4944454e544946590a000000097b6e6f74206a736f6e",
     false,
     {0},
     1,
     "E_BAD_BODY IDENTIFY failed to decode JSON body"},
    {"handshake_identify_deflate_level_7",
     false,
     false,
     "4944454e544946590a0000012c7b22636c69656e745f6964223a22636f6e666f"
     "726d616e6365222c22686f73746e616d65223a22636f6e666f726d616e63652e"
     "6c6f63616c222c22757365725f6167656e74223a226e73717075622d636f6e66"
     "6f726d616e63652f312e30222c22666561747572655f6e65676f74696174696f"
     "6e223a747275652c226865617274626561745f696e74657276616c223a333030"
     "30302c226f75747075745f6275666665725f73697a65223a31363338342c226f"
     "75747075745f6275666665725f74696d656f7574223a3235302c226d73675f74"
     "696d656f7574223a302c2273616d706c655f72617465223a302c22746c735f76"
     "31223a66616c73652c226465666c617465223a747275652c226465666c617465"
     "5f6c6576656c223a372c22736e61707079223a66616c73657d",
     true,
     {"conformance", "conformance.local", "nsqpub-conformance/1.0", true, 30000,
      16384, 250, 0, 0, false, true, 7, false},
     0,
     "{\"max_rdy_count\":2500,\"version\":\"1.3.0\",\"max_msg_timeout\":900000,"
     "\"msg_timeout\":60000,\"tls_v1\":false,\"deflate\":true,\"deflate_"
     "level\":6,\"max_deflate_level\":6,\"snappy\":false,\"sample_rate\":0,"
     "\"auth_required\":false,\"output_buffer_size\":16384,\"output_buffer_"
     "timeout\":250}"},
    {"handshake_identify_disable_buffering",
     false,
     false,
     "4944454e544946590a000001267b22636c69656e745f6964223a22636f6e666f"
     "726d616e6365222c22686f73746e616d65223a22636f6e666f726d616e63652e"
     "6c6f63616c222c22757365725f6167656e74223a226e73717075622d636f6e66"
     "6f726d616e63652f312e30222c22666561747572655f6e65676f74696174696f"
     "6e223a747275652c226865617274626561745f696e74657276616c223a2d312c"
     "226f75747075745f6275666665725f73697a65223a2d312c226f75747075745f"
     "6275666665725f74696d656f7574223a2d312c226d73675f74696d656f757422"
     "3a302c2273616d706c655f72617465223a302c22746c735f7631223a66616c73"
     "652c226465666c617465223a66616c73652c226465666c6174655f6c6576656c"
     "223a302c22736e61707079223a66616c73657d",
     true,
     {"conformance", "conformance.local", "nsqpub-conformance/1.0", true, -1,
      -1, -1, 0, 0, false, false, 0, false},
     0,
     "{\"max_rdy_count\":2500,\"version\":\"1.3.0\",\"max_msg_timeout\":900000,"
     "\"msg_timeout\":60000,\"tls_v1\":false,\"deflate\":false,\"deflate_"
     "level\":6,\"max_deflate_level\":6,\"snappy\":false,\"sample_rate\":0,"
     "\"auth_required\":false,\"output_buffer_size\":1,\"output_buffer_"
     "timeout\":0}"},
    {"handshake_identify_empty_object",
     false,
     false,
     "4944454e544946590a000000027b7d",
     false,
     {0},
     0,
     "OK"},
    {"handshake_identify_feature_negotiation",
     false,
     false,
     "4944454e544946590a0000012d7b22636c69656e745f6964223a22636f6e666f"
     "726d616e6365222c22686f73746e616d65223a22636f6e666f726d616e63652e"
     "6c6f63616c222c22757365725f6167656e74223a226e73717075622d636f6e66"
     "6f726d616e63652f312e30222c22666561747572655f6e65676f74696174696f"
     "6e223a747275652c226865617274626561745f696e74657276616c223a333030"
     "30302c226f75747075745f6275666665725f73697a65223a31363338342c226f"
     "75747075745f6275666665725f74696d656f7574223a3235302c226d73675f74"
     "696d656f7574223a302c2273616d706c655f72617465223a302c22746c735f76"
     "31223a66616c73652c226465666c617465223a66616c73652c226465666c6174"
     "655f6c6576656c223a302c22736e61707079223a66616c73657d",
     true,
     {"conformance", "conformance.local", "nsqpub-conformance/1.0", true, 30000,
      16384, 250, 0, 0, false, false, 0, false},
     0,
     "{\"max_rdy_count\":2500,\"version\":\"1.3.0\",\"max_msg_timeout\":900000,"
     "\"msg_timeout\":60000,\"tls_v1\":false,\"deflate\":false,\"deflate_"
     "level\":6,\"max_deflate_level\":6,\"snappy\":false,\"sample_rate\":0,"
     "\"auth_required\":false,\"output_buffer_size\":16384,\"output_buffer_"
     "timeout\":250}"},
    {"handshake_identify_heartbeat_999",
     false,
     false,
     "4944454e544946590a0000012b7b22636c69656e745f6964223a22636f6e666f"
     "726d616e6365222c22686f73746e616d65223a22636f6e666f726d616e63652e"
     "6c6f63616c222c22757365725f6167656e74223a226e73717075622d636f6e66"
     "6f726d616e63652f312e30222c22666561747572655f6e65676f74696174696f"
     "6e223a747275652c226865617274626561745f696e74657276616c223a393939"
     "2c226f75747075745f6275666665725f73697a65223a31363338342c226f7574"
     "7075745f6275666665725f74696d656f7574223a3235302c226d73675f74696d"
     "656f7574223a302c2273616d706c655f72617465223a302c22746c735f763122"
     "3a66616c73652c226465666c617465223a66616c73652c226465666c6174655f"
     "6c6576656c223a302c22736e61707079223a66616c73657d",
     true,
     {"conformance", "conformance.local", "nsqpub-conformance/1.0", true, 999,
      16384, 250, 0, 0, false, false, 0, false},
     1,
     "E_BAD_BODY IDENTIFY heartbeat interval (999) is invalid"},
    {"handshake_identify_limits_max_ok",
     false,
     false,
     "4944454e544946590a000001357b22636c69656e745f6964223a22636f6e666f"
     "726d616e6365222c22686f73746e616d65223a22636f6e666f726d616e63652e"
     "6c6f63616c222c22757365725f6167656e74223a226e73717075622d636f6e66"
     "6f726d616e63652f312e30222c22666561747572655f6e65676f74696174696f"
     "6e223a747275652c226865617274626561745f696e74657276616c223a363030"
     "30302c226f75747075745f6275666665725f73697a65223a36353533362c226f"
     "75747075745f6275666665725f74696d656f7574223a33303030302c226d7367"
     "5f74696d656f7574223a3930303030302c2273616d706c655f72617465223a39"
     "392c22746c735f7631223a66616c73652c226465666c617465223a66616c7365"
     "2c226465666c6174655f6c6576656c223a302c22736e61707079223a66616c73"
     "657d",
     true,
     {"conformance", "conformance.local", "nsqpub-conformance/1.0", true, 60000,
      65536, 30000, 900000, 99, false, false, 0, false},
     0,
     "{\"max_rdy_count\":2500,\"version\":\"1.3.0\",\"max_msg_timeout\":900000,"
     "\"msg_timeout\":900000,\"tls_v1\":false,\"deflate\":false,\"deflate_"
     "level\":6,\"max_deflate_level\":6,\"snappy\":false,\"sample_rate\":99,"
     "\"auth_required\":false,\"output_buffer_size\":65536,\"output_buffer_"
     "timeout\":30000}"},
    {"handshake_identify_msg_timeout_999",
     false,
     false,
     "4944454e544946590a0000012f7b22636c69656e745f6964223a22636f6e666f"
     "726d616e6365222c22686f73746e616d65223a22636f6e666f726d616e63652e"
     "6c6f63616c222c22757365725f6167656e74223a226e73717075622d636f6e66"
     "6f726d616e63652f312e30222c22666561747572655f6e65676f74696174696f"
     "6e223a747275652c226865617274626561745f696e74657276616c223a333030"
     "30302c226f75747075745f6275666665725f73697a65223a31363338342c226f"
     "75747075745f6275666665725f74696d656f7574223a3235302c226d73675f74"
     "696d656f7574223a3939392c2273616d706c655f72617465223a302c22746c73"
     "5f7631223a66616c73652c226465666c617465223a66616c73652c226465666c"
     "6174655f6c6576656c223a302c22736e61707079223a66616c73657d",
     true,
     {"conformance", "conformance.local", "nsqpub-conformance/1.0", true, 30000,
      16384, 250, 999, 0, false, false, 0, false},
     1,
     "E_BAD_BODY IDENTIFY msg timeout (999) is invalid"},
    {"handshake_identify_output_buffer_size_63",
     false,
     false,
     "4944454e544946590a0000012a7b22636c69656e745f6964223a22636f6e666f"
     "726d616e6365222c22686f73746e616d65223a22636f6e666f726d616e63652e"
     "6c6f63616c222c22757365725f6167656e74223a226e73717075622d636f6e66"
     "6f726d616e63652f312e30222c22666561747572655f6e65676f74696174696f"
     "6e223a747275652c226865617274626561745f696e74657276616c223a333030"
     "30302c226f75747075745f6275666665725f73697a65223a36332c226f757470"
     "75745f6275666665725f74696d656f7574223a3235302c226d73675f74696d65"
     "6f7574223a302c2273616d706c655f72617465223a302c22746c735f7631223a"
     "66616c73652c226465666c617465223a66616c73652c226465666c6174655f6c"
     "6576656c223a302c22736e61707079223a66616c73657d",
     true,
     {"conformance", "conformance.local", "nsqpub-conformance/1.0", true, 30000,
      63, 250, 0, 0, false, false, 0, false},
     1,
     "E_BAD_BODY IDENTIFY output buffer size (63) is invalid"},
    {"handshake_identify_output_buffer_timeout_30001",
     false,
     false,
     "4944454e544946590a0000012f7b22636c69656e745f6964223a22636f6e666f"
     "726d616e6365222c22686f73746e616d65223a22636f6e666f726d616e63652e"
     "6c6f63616c222c22757365725f6167656e74223a226e73717075622d636f6e66"
     "6f726d616e63652f312e30222c22666561747572655f6e65676f74696174696f"
     "6e223a747275652c226865617274626561745f696e74657276616c223a333030"
     "30302c226f75747075745f6275666665725f73697a65223a31363338342c226f"
     "75747075745f6275666665725f74696d656f7574223a33303030312c226d7367"
     "5f74696d656f7574223a302c2273616d706c655f72617465223a302c22746c73"
     "5f7631223a66616c73652c226465666c617465223a66616c73652c226465666c"
     "6174655f6c6576656c223a302c22736e61707079223a66616c73657d",
     true,
     {"conformance", "conformance.local", "nsqpub-conformance/1.0", true, 30000,
      16384, 30001, 0, 0, false, false, 0, false},
     1,
     "E_BAD_BODY IDENTIFY output buffer timeout (30001) is invalid"},
    {"handshake_identify_plain_ok",
     false,
     false,
     "4944454e544946590a0000012e7b22636c69656e745f6964223a22636f6e666f"
     "726d616e6365222c22686f73746e616d65223a22636f6e666f726d616e63652e"
     "6c6f63616c222c22757365725f6167656e74223a226e73717075622d636f6e66"
     "6f726d616e63652f312e30222c22666561747572655f6e65676f74696174696f"
     "6e223a66616c73652c226865617274626561745f696e74657276616c223a3330"
     "3030302c226f75747075745f6275666665725f73697a65223a31363338342c22"
     "6f75747075745f6275666665725f74696d656f7574223a3235302c226d73675f"
     "74696d656f7574223a302c2273616d706c655f72617465223a302c22746c735f"
     "7631223a66616c73652c226465666c617465223a66616c73652c226465666c61"
     "74655f6c6576656c223a302c22736e61707079223a66616c73657d",
     true,
     {"conformance", "conformance.local", "nsqpub-conformance/1.0", false,
      30000, 16384, 250, 0, 0, false, false, 0, false},
     0,
     "OK"},
    {"handshake_identify_sample_rate_100",
     false,
     false,
     "4944454e544946590a0000012f7b22636c69656e745f6964223a22636f6e666f"
     "726d616e6365222c22686f73746e616d65223a22636f6e666f726d616e63652e"
     "6c6f63616c222c22757365725f6167656e74223a226e73717075622d636f6e66"
     "6f726d616e63652f312e30222c22666561747572655f6e65676f74696174696f"
     "6e223a747275652c226865617274626561745f696e74657276616c223a333030"
     "30302c226f75747075745f6275666665725f73697a65223a31363338342c226f"
     "75747075745f6275666665725f74696d656f7574223a3235302c226d73675f74"
     "696d656f7574223a302c2273616d706c655f72617465223a3130302c22746c73"
     "5f7631223a66616c73652c226465666c617465223a66616c73652c226465666c"
     "6174655f6c6576656c223a302c22736e61707079223a66616c73657d",
     true,
     {"conformance", "conformance.local", "nsqpub-conformance/1.0", true, 30000,
      16384, 250, 0, 100, false, false, 0, false},
     1,
     "E_BAD_BODY IDENTIFY sample rate (100) is invalid"},
    {"handshake_identify_snappy_and_deflate",
     false,
     false,
     "4944454e544946590a0000012b7b22636c69656e745f6964223a22636f6e666f"
     "726d616e6365222c22686f73746e616d65223a22636f6e666f726d616e63652e"
     "6c6f63616c222c22757365725f6167656e74223a226e73717075622d636f6e66"
     "6f726d616e63652f312e30222c22666561747572655f6e65676f74696174696f"
     "6e223a747275652c226865617274626561745f696e74657276616c223a333030"
     "30302c226f75747075745f6275666665725f73697a65223a31363338342c226f"
     "75747075745f6275666665725f74696d656f7574223a3235302c226d73675f74"
     "696d656f7574223a302c2273616d706c655f72617465223a302c22746c735f76"
     "31223a66616c73652c226465666c617465223a747275652c226465666c617465"
     "5f6c6576656c223a362c22736e61707079223a747275657d",
     true,
     {"conformance", "conformance.local", "nsqpub-conformance/1.0", true, 30000,
      16384, 250, 0, 0, false, true, 6, true},
     1,
     "E_IDENTIFY_FAILED cannot enable both deflate and snappy compression"},
    {"auth_identify_reply",
     false,
     true,
     "4944454e544946590a0000012d7b22636c69656e745f6964223a22636f6e666f"
     "726d616e6365222c22686f73746e616d65223a22636f6e666f726d616e63652e"
     "6c6f63616c222c22757365725f6167656e74223a226e73717075622d636f6e66"
     "6f726d616e63652f312e30222c22666561747572655f6e65676f74696174696f"
     "6e223a747275652c226865617274626561745f696e74657276616c223a333030"
     "30302c226f75747075745f6275666665725f73697a65223a31363338342c226f"
     "75747075745f6275666665725f74696d656f7574223a3235302c226d73675f74"
     "696d656f7574223a302c2273616d706c655f72617465223a302c22746c735f76"
     "31223a66616c73652c226465666c617465223a66616c73652c226465666c6174"
     "655f6c6576656c223a302c22736e61707079223a66616c73657d",
     true,
     {"conformance", "conformance.local", "nsqpub-conformance/1.0", true, 30000,
      16384, 250, 0, 0, false, false, 0, false},
     0,
     "{\"max_rdy_count\":2500,\"version\":\"1.3.0\",\"max_msg_timeout\":900000,"
     "\"msg_timeout\":60000,\"tls_v1\":false,\"deflate\":false,\"deflate_"
     "level\":6,\"max_deflate_level\":6,\"snappy\":false,\"sample_rate\":0,"
     "\"auth_required\":true,\"output_buffer_size\":16384,\"output_buffer_"
     "timeout\":250}"},
    {"compression_deflate_level_6",
     false,
     false,
     "4944454e544946590a0000012c7b22636c69656e745f6964223a22636f6e666f"
     "726d616e6365222c22686f73746e616d65223a22636f6e666f726d616e63652e"
     "6c6f63616c222c22757365725f6167656e74223a226e73717075622d636f6e66"
     "6f726d616e63652f312e30222c22666561747572655f6e65676f74696174696f"
     "6e223a747275652c226865617274626561745f696e74657276616c223a333030"
     "30302c226f75747075745f6275666665725f73697a65223a31363338342c226f"
     "75747075745f6275666665725f74696d656f7574223a3235302c226d73675f74"
     "696d656f7574223a302c2273616d706c655f72617465223a302c22746c735f76"
     "31223a66616c73652c226465666c617465223a747275652c226465666c617465"
     "5f6c6576656c223a362c22736e61707079223a66616c73657d",
     true,
     {"conformance", "conformance.local", "nsqpub-conformance/1.0", true, 30000,
      16384, 250, 0, 0, false, true, 6, false},
     0,
     "{\"max_rdy_count\":2500,\"version\":\"1.3.0\",\"max_msg_timeout\":900000,"
     "\"msg_timeout\":60000,\"tls_v1\":false,\"deflate\":true,\"deflate_"
     "level\":6,\"max_deflate_level\":6,\"snappy\":false,\"sample_rate\":0,"
     "\"auth_required\":false,\"output_buffer_size\":16384,\"output_buffer_"
     "timeout\":250}"},
    {"compression_snappy",
     false,
     false,
     "4944454e544946590a0000012c7b22636c69656e745f6964223a22636f6e666f"
     "726d616e6365222c22686f73746e616d65223a22636f6e666f726d616e63652e"
     "6c6f63616c222c22757365725f6167656e74223a226e73717075622d636f6e66"
     "6f726d616e63652f312e30222c22666561747572655f6e65676f74696174696f"
     "6e223a747275652c226865617274626561745f696e74657276616c223a333030"
     "30302c226f75747075745f6275666665725f73697a65223a31363338342c226f"
     "75747075745f6275666665725f74696d656f7574223a3235302c226d73675f74"
     "696d656f7574223a302c2273616d706c655f72617465223a302c22746c735f76"
     "31223a66616c73652c226465666c617465223a66616c73652c226465666c6174"
     "655f6c6576656c223a302c22736e61707079223a747275657d",
     true,
     {"conformance", "conformance.local", "nsqpub-conformance/1.0", true, 30000,
      16384, 250, 0, 0, false, false, 0, true},
     0,
     "{\"max_rdy_count\":2500,\"version\":\"1.3.0\",\"max_msg_timeout\":900000,"
     "\"msg_timeout\":60000,\"tls_v1\":false,\"deflate\":false,\"deflate_"
     "level\":6,\"max_deflate_level\":6,\"snappy\":true,\"sample_rate\":0,"
     "\"auth_required\":false,\"output_buffer_size\":16384,\"output_buffer_"
     "timeout\":250}"},
    {"misc_heartbeat",
     false,
     false,
     "4944454e544946590a0000012d7b22636c69656e745f6964223a22636f6e666f"
     "726d616e6365222c22686f73746e616d65223a22636f6e666f726d616e63652e"
     "6c6f63616c222c22757365725f6167656e74223a226e73717075622d636f6e66"
     "6f726d616e63652f312e30222c22666561747572655f6e65676f74696174696f"
     "6e223a66616c73652c226865617274626561745f696e74657276616c223a3130"
     "30302c226f75747075745f6275666665725f73697a65223a31363338342c226f"
     "75747075745f6275666665725f74696d656f7574223a3235302c226d73675f74"
     "696d656f7574223a302c2273616d706c655f72617465223a302c22746c735f76"
     "31223a66616c73652c226465666c617465223a66616c73652c226465666c6174"
     "655f6c6576656c223a302c22736e61707079223a66616c73657d",
     true,
     {"conformance", "conformance.local", "nsqpub-conformance/1.0", false, 1000,
      16384, 250, 0, 0, false, false, 0, false},
     0,
     "OK"},
    {"misc_sub_heartbeats_disabled",
     false,
     false,
     "4944454e544946590a0000012b7b22636c69656e745f6964223a22636f6e666f"
     "726d616e6365222c22686f73746e616d65223a22636f6e666f726d616e63652e"
     "6c6f63616c222c22757365725f6167656e74223a226e73717075622d636f6e66"
     "6f726d616e63652f312e30222c22666561747572655f6e65676f74696174696f"
     "6e223a66616c73652c226865617274626561745f696e74657276616c223a2d31"
     "2c226f75747075745f6275666665725f73697a65223a31363338342c226f7574"
     "7075745f6275666665725f74696d656f7574223a3235302c226d73675f74696d"
     "656f7574223a302c2273616d706c655f72617465223a302c22746c735f763122"
     "3a66616c73652c226465666c617465223a66616c73652c226465666c6174655f"
     "6c6576656c223a302c22736e61707079223a66616c73657d",
     true,
     {"conformance", "conformance.local", "nsqpub-conformance/1.0", false, -1,
      16384, 250, 0, 0, false, false, 0, false},
     0,
     "OK"},
    {"tls_identify_tls_v1",
     true,
     false,
     "4944454e544946590a0000012c7b22636c69656e745f6964223a22636f6e666f"
     "726d616e6365222c22686f73746e616d65223a22636f6e666f726d616e63652e"
     "6c6f63616c222c22757365725f6167656e74223a226e73717075622d636f6e66"
     "6f726d616e63652f312e30222c22666561747572655f6e65676f74696174696f"
     "6e223a747275652c226865617274626561745f696e74657276616c223a333030"
     "30302c226f75747075745f6275666665725f73697a65223a31363338342c226f"
     "75747075745f6275666665725f74696d656f7574223a3235302c226d73675f74"
     "696d656f7574223a302c2273616d706c655f72617465223a302c22746c735f76"
     "31223a747275652c226465666c617465223a66616c73652c226465666c617465"
     "5f6c6576656c223a302c22736e61707079223a66616c73657d",
     true,
     {"conformance", "conformance.local", "nsqpub-conformance/1.0", true, 30000,
      16384, 250, 0, 0, true, false, 0, false},
     0,
     "{\"max_rdy_count\":2500,\"version\":\"1.3.0\",\"max_msg_timeout\":900000,"
     "\"msg_timeout\":60000,\"tls_v1\":true,\"deflate\":false,\"deflate_"
     "level\":6,\"max_deflate_level\":6,\"snappy\":false,\"sample_rate\":0,"
     "\"auth_required\":false,\"output_buffer_size\":16384,\"output_buffer_"
     "timeout\":250}"},
    {"tls_identify_without_tls",
     true,
     false,
     "4944454e544946590a0000012d7b22636c69656e745f6964223a22636f6e666f"
     "726d616e6365222c22686f73746e616d65223a22636f6e666f726d616e63652e"
     "6c6f63616c222c22757365725f6167656e74223a226e73717075622d636f6e66"
     "6f726d616e63652f312e30222c22666561747572655f6e65676f74696174696f"
     "6e223a747275652c226865617274626561745f696e74657276616c223a333030"
     "30302c226f75747075745f6275666665725f73697a65223a31363338342c226f"
     "75747075745f6275666665725f74696d656f7574223a3235302c226d73675f74"
     "696d656f7574223a302c2273616d706c655f72617465223a302c22746c735f76"
     "31223a66616c73652c226465666c617465223a66616c73652c226465666c6174"
     "655f6c6576656c223a302c22736e61707079223a66616c73657d",
     true,
     {"conformance", "conformance.local", "nsqpub-conformance/1.0", true, 30000,
      16384, 250, 0, 0, false, false, 0, false},
     0,
     "{\"max_rdy_count\":2500,\"version\":\"1.3.0\",\"max_msg_timeout\":900000,"
     "\"msg_timeout\":60000,\"tls_v1\":false,\"deflate\":false,\"deflate_"
     "level\":6,\"max_deflate_level\":6,\"snappy\":false,\"sample_rate\":0,"
     "\"auth_required\":false,\"output_buffer_size\":16384,\"output_buffer_"
     "timeout\":250}"},
};

#define NVEC (sizeof vec_identify / sizeof vec_identify[0])

/* The JSON nsqd answers with its defaults, as in the capture. */
#define DEFAULT_REPLY                                                          \
    "{\"max_rdy_count\":2500,\"version\":\"1.3.0\",\"max_msg_timeout\":"       \
    "900000,\"msg_timeout\":60000,\"tls_v1\":false,\"deflate\":false,"         \
    "\"deflate_level\":6,\"max_deflate_level\":6,\"snappy\":false,"            \
    "\"sample_rate\":0,\"auth_required\":false,\"output_buffer_size\":16384,"  \
    "\"output_buffer_timeout\":250}"

#define AUTH_REPLY                                                             \
    "{\"identity\":\"bench\",\"identity_url\":\"\",\"permission_count\":1}"

static size_t hex_decode(const char *hex, unsigned char *out, size_t cap)
{
    size_t n = strlen(hex) / 2;
    ck_assert_uint_le(n, cap);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        ck_assert_int_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (unsigned char)v;
    }
    return n;
}

/* A broker, one client's settings and the reply buffer. */
typedef struct env {
    nsq_broker_info_t info;
    nsq_identify_settings_t s;
    nsq_buf_t reply;
} env_t;

static void env_init(env_t *e)
{
    nsq_broker_info_default(&e->info);
    nsq_identify_settings_init(&e->s, &e->info);
    nsq_buf_init(&e->reply);
}

static void env_free(env_t *e)
{
    nsq_identify_settings_free(&e->s);
    nsq_buf_free(&e->reply);
}

static nsq_err_t env_apply_n(env_t *e, const char *body, size_t len)
{
    e->reply.len = 0;
    return nsq_identify_apply(body, len, &e->info, &e->s, &e->reply);
}

static nsq_err_t env_apply(env_t *e, const char *body)
{
    return env_apply_n(e, body, strlen(body));
}

#define ck_reply(e, want)                                                      \
    do {                                                                       \
        const char *w_ = (want);                                               \
        ck_assert_msg((e)->reply.len == strlen(w_) &&                          \
                          memcmp((e)->reply.data, w_, strlen(w_)) == 0,        \
                      "reply '%.*s' != '%s'", (int)(e)->reply.len,             \
                      (e)->reply.data ? (e)->reply.data : "", w_);             \
    } while (0)

/* ---------------------------------------------------------- client side */

START_TEST(identify_default)
{
    nsq_identify_t id;
    memset(&id, 0xa5, sizeof id);
    nsq_identify_default(&id);
    ck_assert_ptr_null(id.client_id);
    ck_assert_ptr_null(id.hostname);
    ck_assert_ptr_null(id.user_agent);
    ck_assert(id.feature_negotiation);
    ck_assert_int_eq(id.heartbeat_interval, 30000);
    ck_assert_int_eq(id.output_buffer_size, 16384);
    ck_assert_int_eq(id.output_buffer_timeout, 250);
    ck_assert_int_eq(id.msg_timeout, 0);
    ck_assert_int_eq(id.sample_rate, 0);
    ck_assert(!id.tls_v1);
    ck_assert(!id.deflate);
    ck_assert_int_eq(id.deflate_level, 6);
    ck_assert(!id.snappy);
}
END_TEST

/* How many vectors have exactly nsq_cmd_identify's fields; with k, the
 * k-th of them (so that no loop iteration passes without an assertion). */
static size_t encodable_count(void)
{
    size_t n = 0;
    for (size_t i = 0; i < NVEC; i++)
        n += vec_identify[i].encodable;
    return n;
}

static const vec_identify_t *encodable_vec(size_t k)
{
    for (size_t i = 0; i < NVEC; i++)
        if (vec_identify[i].encodable && k-- == 0)
            return &vec_identify[i];
    ck_abort_msg("no encodable vector %zu", k);
    return NULL;
}

/* Every vector body with nsq_cmd_identify's fields, encoded again. */
START_TEST(cmd_identify_vectors)
{
    const vec_identify_t *v = encodable_vec((size_t)_i);
    unsigned char want[1024];
    size_t n = hex_decode(v->send_hex, want, sizeof want);
    nsq_buf_t b = {0};
    /* Appends after what the buffer holds. */
    ck_assert_int_eq(nsq_buf_append(&b, "NOP\n", 4), NSQ_OK);
    ck_assert_int_eq(nsq_cmd_identify(&b, &v->id), NSQ_OK);
    ck_assert_uint_eq(b.len, 4 + n);
    ck_assert_mem_eq(b.data, "NOP\n", 4);
    ck_assert_msg(memcmp(b.data + 4, want, n) == 0, "%s: '%.*s'", v->name,
                  (int)b.len - 4, b.data + 4);
    nsq_buf_free(&b);
}
END_TEST

/* The encoder is compared with 18 of the capture's 20 IDENTIFYs (the
 * other two bodies do not have exactly its fields). */
START_TEST(cmd_identify_vectors_count)
{
    ck_assert_uint_eq(encodable_count(), 18);
}
END_TEST

START_TEST(cmd_identify_defaults_null_strings)
{
    static const char body[] =
        "{\"client_id\":\"\",\"hostname\":\"\",\"user_agent\":\"\","
        "\"feature_negotiation\":true,\"heartbeat_interval\":30000,"
        "\"output_buffer_size\":16384,\"output_buffer_timeout\":250,"
        "\"msg_timeout\":0,\"sample_rate\":0,\"tls_v1\":false,"
        "\"deflate\":false,\"deflate_level\":6,\"snappy\":false}";
    nsq_identify_t id;
    nsq_identify_default(&id);
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_cmd_identify(&b, &id), NSQ_OK);
    size_t n = sizeof body - 1;
    ck_assert_uint_eq(b.len, 13 + n);
    ck_assert_mem_eq(b.data, "IDENTIFY\n", 9);
    ck_assert_mem_eq(b.data + 9, "\x00\x00\x00\xfb", 4);
    ck_assert_uint_eq(n, 0xfb);
    ck_assert_mem_eq(b.data + 13, body, n);
    nsq_buf_free(&b);
}
END_TEST

START_TEST(cmd_identify_numbers)
{
    nsq_identify_t id;
    nsq_identify_default(&id);
    id.heartbeat_interval = -1;
    id.output_buffer_size = INT64_MAX;
    id.output_buffer_timeout = INT64_MIN;
    id.msg_timeout = 900000;
    id.sample_rate = 99;
    id.feature_negotiation = false;
    id.tls_v1 = id.deflate = id.snappy = true;
    id.deflate_level = -7;
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_cmd_identify(&b, &id), NSQ_OK);
    static const char body[] =
        "{\"client_id\":\"\",\"hostname\":\"\",\"user_agent\":\"\","
        "\"feature_negotiation\":false,\"heartbeat_interval\":-1,"
        "\"output_buffer_size\":9223372036854775807,"
        "\"output_buffer_timeout\":-9223372036854775808,"
        "\"msg_timeout\":900000,\"sample_rate\":99,\"tls_v1\":true,"
        "\"deflate\":true,\"deflate_level\":-7,\"snappy\":true}";
    ck_assert_uint_eq(b.len, 13 + sizeof body - 1);
    ck_assert_mem_eq(b.data + 13, body, sizeof body - 1);
    ck_assert_uint_eq((unsigned char)b.data[12], sizeof body - 1 - 256);
    ck_assert_uint_eq((unsigned char)b.data[11], 1);
    nsq_buf_free(&b);
}
END_TEST

/* Strings are escaped as Go's json.Marshal (go-nsq) escapes them. */
static const struct {
    const char *in, *out;
} escapes[] = {
    {"plain", "\"plain\""},
    {"q\"b\\s/", "\"q\\\"b\\\\s/\""},
    {"\n\r\t", "\"\\n\\r\\t\""},
    {"\x01\x08\x0c\x1f\x7f", "\"\\u0001\\u0008\\u000c\\u001f\x7f\""},
    {"<a&b>", "\"\\u003ca\\u0026b\\u003e\""},
    {"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80",
     "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\""},
    {"\xe2\x80\xa8\xe2\x80\xa9", "\"\\u2028\\u2029\""},
    /* invalid UTF-8: each bad byte is one \ufffd */
    {"a\xff"
     "b",
     "\"a\\ufffdb\""},
    {"\xc0\xaf", "\"\\ufffd\\ufffd\""},
    {"\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\""},
    {"\xe2\x82", "\"\\ufffd\\ufffd\""},
    {"\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\""},
    {"\xf0\x9f\x98", "\"\\ufffd\\ufffd\\ufffd\""},
};

START_TEST(cmd_identify_escaping)
{
    nsq_identify_t id;
    nsq_identify_default(&id);
    id.client_id = escapes[_i].in;
    id.hostname = "h";
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_cmd_identify(&b, &id), NSQ_OK);
    char want[256];
    snprintf(want, sizeof want, "{\"client_id\":%s,\"hostname\":\"h\",",
             escapes[_i].out);
    ck_assert_uint_ge(b.len, 13 + strlen(want));
    ck_assert_msg(memcmp(b.data + 13, want, strlen(want)) == 0, "got %.*s",
                  (int)b.len - 13, b.data + 13);
    /* Any JSON parser reads it back; cJSON gives the same bytes for valid
     * UTF-8. */
    cJSON *j = cJSON_ParseWithLength(b.data + 13, b.len - 13);
    ck_assert_ptr_nonnull(j);
    const cJSON *cid = cJSON_GetObjectItemCaseSensitive(j, "client_id");
    ck_assert(cJSON_IsString(cid));
    if (!strstr(escapes[_i].out, "fffd"))
        ck_assert_str_eq(cid->valuestring, escapes[_i].in);
    cJSON_Delete(j);
    nsq_buf_free(&b);
}
END_TEST

START_TEST(cmd_identify_invalid)
{
    nsq_identify_t id;
    nsq_identify_default(&id);
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_buf_append(&b, "xy", 2), NSQ_OK);
    ck_assert_int_eq(nsq_cmd_identify(&b, NULL), NSQ_ERR_INVALID_ARG);
    ck_assert_uint_eq(b.len, 2);
    ck_assert_int_eq(nsq_cmd_identify(NULL, &id), NSQ_ERR_INVALID_ARG);
    nsq_buf_free(&b);
}
END_TEST

/* The encoder's strings come back unchanged through the broker's decoder. */
START_TEST(cmd_identify_roundtrip)
{
    const char *s = escapes[_i].in;
    nsq_identify_t id;
    nsq_identify_default(&id);
    id.client_id = s;
    id.hostname = "host\"\\";
    id.user_agent = "nsqpub/0.1 <x>";
    id.heartbeat_interval = 1000;
    id.msg_timeout = 5000;
    id.sample_rate = 42;
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_cmd_identify(&b, &id), NSQ_OK);
    env_t e;
    env_init(&e);
    ck_assert_int_eq(env_apply_n(&e, b.data + 13, b.len - 13), NSQ_OK);
    if (!strstr(escapes[_i].out, "fffd"))
        ck_assert_str_eq(e.s.client_id, s);
    else
        ck_assert_ptr_nonnull(strstr(e.s.client_id, "\xef\xbf\xbd"));
    ck_assert_str_eq(e.s.hostname, "host\"\\");
    ck_assert_str_eq(e.s.user_agent, "nsqpub/0.1 <x>");
    ck_assert_int_eq(e.s.heartbeat_interval_ms, 1000);
    ck_assert_int_eq(e.s.msg_timeout_ms, 5000);
    ck_assert_int_eq(e.s.sample_rate, 42);
    ck_assert(e.s.feature_negotiation);
    env_free(&e);
    nsq_buf_free(&b);
}
END_TEST

START_TEST(reply_parse_ok)
{
    nsq_identify_reply_t r;
    memset(&r, 0xa5, sizeof r);
    char err[64] = "junk";
    ck_assert_int_eq(nsq_identify_reply_parse("OK", 2, &r, err, sizeof err),
                     NSQ_OK);
    ck_assert(!r.negotiated);
    ck_assert_int_eq(r.max_rdy_count, 0);
    ck_assert_str_eq(r.version, "");
    ck_assert_int_eq(r.msg_timeout, 0);
    ck_assert(!r.tls_v1 && !r.deflate && !r.snappy && !r.auth_required);
    ck_assert_int_eq(r.output_buffer_size, 0);
    ck_assert_str_eq(err, "");
    /* "OK" only as the whole data. */
    ck_assert_int_eq(nsq_identify_reply_parse("OK ", 3, &r, NULL, 0),
                     NSQ_ERR_BAD_JSON);
    ck_assert_int_eq(nsq_identify_reply_parse("O", 1, &r, NULL, 0),
                     NSQ_ERR_BAD_JSON);
    ck_assert_int_eq(nsq_identify_reply_parse("ok", 2, &r, NULL, 0),
                     NSQ_ERR_BAD_JSON);
}
END_TEST

static void parse_reply(const char *json, nsq_identify_reply_t *r)
{
    char err[128];
    nsq_err_t rc =
        nsq_identify_reply_parse(json, strlen(json), r, err, sizeof err);
    ck_assert_msg(rc == NSQ_OK, "%s: %s", json, err);
    ck_assert(r->negotiated);
}

START_TEST(reply_parse_vectors)
{
    nsq_identify_reply_t r;
    parse_reply(DEFAULT_REPLY, &r);
    ck_assert_int_eq(r.max_rdy_count, 2500);
    ck_assert_str_eq(r.version, "1.3.0");
    ck_assert_int_eq(r.max_msg_timeout, 900000);
    ck_assert_int_eq(r.msg_timeout, 60000);
    ck_assert(!r.tls_v1);
    ck_assert(!r.deflate);
    ck_assert_int_eq(r.deflate_level, 6);
    ck_assert_int_eq(r.max_deflate_level, 6);
    ck_assert(!r.snappy);
    ck_assert_int_eq(r.sample_rate, 0);
    ck_assert(!r.auth_required);
    ck_assert_int_eq(r.output_buffer_size, 16384);
    ck_assert_int_eq(r.output_buffer_timeout, 250);

    /* Every JSON answer in the capture. */
    for (size_t i = 0; i < NVEC; i++) {
        const vec_identify_t *v = &vec_identify[i];
        if (v->reply_type != NSQ_FRAME_RESPONSE || v->reply[0] != '{')
            continue;
        parse_reply(v->reply, &r);
        ck_assert_str_eq(r.version, "1.3.0");
        ck_assert_int_eq(r.auth_required, v->auth_enabled);
        ck_assert_int_eq(r.tls_v1, v->tls_enabled && v->id.tls_v1);
        ck_assert_int_eq(r.snappy, v->id.snappy);
        ck_assert_int_eq(r.deflate, v->id.deflate);
        ck_assert_int_eq(r.deflate_level, 6);
    }

    parse_reply("{\"max_rdy_count\":2500,\"version\":\"1.3.0\","
                "\"max_msg_timeout\":900000,\"msg_timeout\":900000,"
                "\"tls_v1\":true,\"deflate\":true,\"deflate_level\":3,"
                "\"max_deflate_level\":9,\"snappy\":true,\"sample_rate\":99,"
                "\"auth_required\":true,\"output_buffer_size\":1,"
                "\"output_buffer_timeout\":0}",
                &r);
    ck_assert_int_eq(r.msg_timeout, 900000);
    ck_assert(r.tls_v1 && r.deflate && r.snappy && r.auth_required);
    ck_assert_int_eq(r.deflate_level, 3);
    ck_assert_int_eq(r.max_deflate_level, 9);
    ck_assert_int_eq(r.sample_rate, 99);
    ck_assert_int_eq(r.output_buffer_size, 1);
    ck_assert_int_eq(r.output_buffer_timeout, 0);
}
END_TEST

START_TEST(reply_parse_lenient)
{
    nsq_identify_reply_t r;
    /* Missing fields are zero, unknown ones skipped, null is absent. */
    parse_reply(" {\"version\":\"2.0\",\"extra\":{\"a\":[1,{\"b\":null}]},"
                "\"max_rdy_count\":null,\"new_flag\":true} \r\n",
                &r);
    ck_assert_str_eq(r.version, "2.0");
    ck_assert_int_eq(r.max_rdy_count, 0);
    ck_assert_int_eq(r.msg_timeout, 0);
    ck_assert(!r.tls_v1);
    parse_reply("{}", &r);
    ck_assert_str_eq(r.version, "");
    /* Keys match in any case, as Go matches them; of two keys that match,
     * the first is taken (cJSON's rule; nsqd never repeats a key). */
    parse_reply("{\"MAX_RDY_COUNT\":7,\"Snappy\":true,\"max_rdy_count\":8,"
                "\"Deflate_Level\":-0}",
                &r);
    ck_assert_int_eq(r.max_rdy_count, 7);
    ck_assert(r.snappy);
    ck_assert_int_eq(r.deflate_level, 0);
    parse_reply("{\"ver\\u0073ion\":\"x\"}", &r);
    ck_assert_str_eq(r.version, "x");
    /* Integers up to 2^53 either way, exactly (nsqd's are far below);
     * an integral number written with a fraction or an exponent is that
     * integer. */
    parse_reply("{\"max_rdy_count\":9007199254740992,"
                "\"msg_timeout\":-9007199254740992,\"sample_rate\":6e1,"
                "\"deflate_level\":4.0}",
                &r);
    ck_assert_int_eq(r.max_rdy_count, 9007199254740992LL);
    ck_assert_int_eq(r.msg_timeout, -9007199254740992LL);
    ck_assert_int_eq(r.sample_rate, 60);
    ck_assert_int_eq(r.deflate_level, 4);
    /* The longest version that fits. */
    parse_reply("{\"version\":\"0123456789012345678901234567890\"}", &r);
    ck_assert_uint_eq(strlen(r.version), 31);
    /* Escapes, surrogate pairs, UTF-8 as it is. */
    parse_reply("{\"version\":\"\\u00e9\\ud83d\\ude00\"}", &r);
    ck_assert_str_eq(r.version, "\xc3\xa9\xf0\x9f\x98\x80");
    parse_reply("{\"version\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"}", &r);
    ck_assert_str_eq(r.version, "\"\\/\b\f\n\r\t");
    parse_reply("{\"version\":\"\xc3\xa9\\u20AC\"}", &r);
    ck_assert_str_eq(r.version, "\xc3\xa9\xe2\x82\xac");
}
END_TEST

static const struct {
    const char *json;
    const char *reason; /* a part of errstr */
} reply_errors[] = {
    {"", "empty reply"},
    {" ", "malformed JSON at offset"},
    {"{", "malformed JSON at offset"},
    {"{\"version\":\"1.3.0\"", "malformed JSON at offset 17"},
    {"{\"version\":\"1.3.0", "malformed JSON at offset"},
    {"[]", "not a JSON object"},
    {"null", "not a JSON object"},
    {"1", "not a JSON object"},
    {"\"OK\"", "not a JSON object"},
    {"true", "not a JSON object"},
    {"{}x", "bytes after the JSON object"},
    {"{}{}", "bytes after the JSON object"},
    {"{} 1", "bytes after the JSON object"},
    {"{\"a\":1,}", "malformed JSON at offset 7"},
    {"{,}", "malformed JSON"},
    {"{\"a\" 1}", "malformed JSON"},
    {"{'a':1}", "malformed JSON"},
    {"{\"a\":+1}", "malformed JSON"},
    {"{\"a\":.5}", "malformed JSON"},
    {"{\"a\":-}", "malformed JSON"},
    {"{\"a\":1e}", "malformed JSON"},
    {"{\"a\":tru}", "malformed JSON"},
    {"{\"a\":nul}", "malformed JSON"},
    {"{\"a\":\"\\x\"}", "malformed JSON"},
    {"{\"a\":[1,]}", "malformed JSON"},
    {"{\"a\":[1 2]}", "malformed JSON"},
    {"{\"a\":{\"b\":1,}}", "malformed JSON"},
    {"{}\x0c", "control byte 0x0c at offset 2"},
    {"{\"version\":\"a\x01\"}", "control byte 0x01 at offset 13"},
    {"{\"max_rdy_count\":\"2500\"}", "field max_rdy_count: expected a number"},
    {"{\"msg_timeout\":true}", "field msg_timeout: expected a number"},
    {"{\"msg_timeout\":[]}", "field msg_timeout: expected a number"},
    {"{\"msg_timeout\":1.5}", "field msg_timeout: not an integer"},
    {"{\"msg_timeout\":-0.25}", "field msg_timeout: not an integer"},
    {"{\"msg_timeout\":9007199254740994}",
     "field msg_timeout: number out of range"},
    {"{\"msg_timeout\":-9223372036854775809}",
     "field msg_timeout: number out of range"},
    {"{\"msg_timeout\":1e300}", "field msg_timeout: number out of range"},
    {"{\"version\":1}", "field version: expected a string"},
    {"{\"version\":{}}", "field version: expected a string"},
    {"{\"tls_v1\":1}", "field tls_v1: expected true or false"},
    {"{\"snappy\":\"true\"}", "field snappy: expected true or false"},
    {"{\"version\":\"01234567890123456789012345678901\"}",
     "field version: string of 32 bytes too long"},
    {"{\"version\":\"\\u00e90123456789012345678901234567890\"}",
     "field version: string of 33 bytes too long"},
};

START_TEST(reply_parse_errors)
{
    const char *json = reply_errors[_i].json;
    nsq_identify_reply_t r, before;
    memset(&r, 0x5a, sizeof r);
    /* memcpy, not =: assignment need not copy the padding. */
    memcpy(&before, &r, sizeof r);
    char err[128] = "";
    ck_assert_int_eq(
        nsq_identify_reply_parse(json, strlen(json), &r, err, sizeof err),
        NSQ_ERR_BAD_JSON);
    ck_assert_msg(strstr(err, reply_errors[_i].reason) != NULL,
                  "'%s': errstr '%s'", json, err);
    /* out is left alone on failure. */
    ck_assert_mem_eq(&r, &before, sizeof r);
    /* No errstr is fine too. */
    ck_assert_int_eq(nsq_identify_reply_parse(json, strlen(json), &r, NULL, 0),
                     NSQ_ERR_BAD_JSON);
}
END_TEST

START_TEST(reply_parse_prefixes_and_nul)
{
    const char *json = DEFAULT_REPLY;
    size_t n = strlen(json);
    nsq_identify_reply_t r;
    /* Every cut of the reply is an error. */
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(nsq_identify_reply_parse(json, i, &r, NULL, 0) ==
                          NSQ_ERR_BAD_JSON,
                      "prefix %zu", i);
    /* A NUL byte inside or after the JSON is not whitespace. */
    char buf[512];
    memcpy(buf, json, n);
    buf[n] = '\0';
    ck_assert_int_eq(nsq_identify_reply_parse(buf, n + 1, &r, NULL, 0),
                     NSQ_ERR_BAD_JSON);
    memcpy(buf, "{\"version\":\"1.\0\"}", 17);
    ck_assert_int_eq(nsq_identify_reply_parse(buf, 17, &r, NULL, 0),
                     NSQ_ERR_BAD_JSON);
    ck_assert_int_eq(nsq_identify_reply_parse(NULL, 1, &r, NULL, 0),
                     NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(nsq_identify_reply_parse(json, n, NULL, NULL, 0),
                     NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(nsq_identify_reply_parse(NULL, 0, &r, NULL, 0),
                     NSQ_ERR_BAD_JSON);
    /* A short errstr is cut, still terminated. */
    char err[8];
    memset(err, 'x', sizeof err);
    ck_assert_int_eq(nsq_identify_reply_parse("[]", 2, &r, err, sizeof err),
                     NSQ_ERR_BAD_JSON);
    ck_assert_str_eq(err, "not a J");
    ck_assert_int_eq(nsq_identify_reply_parse("[]", 2, &r, err, 1),
                     NSQ_ERR_BAD_JSON);
    ck_assert_str_eq(err, "");
}
END_TEST

START_TEST(auth_reply)
{
    nsq_auth_reply_t a;
    char err[128];
    memset(&a, 0x5a, sizeof a);
    ck_assert_int_eq(nsq_auth_reply_parse(AUTH_REPLY, strlen(AUTH_REPLY), &a,
                                          err, sizeof err),
                     NSQ_OK);
    ck_assert_str_eq(a.identity, "bench");
    ck_assert_str_eq(a.identity_url, "");
    ck_assert_int_eq(a.permission_count, 1);
    ck_assert_str_eq(err, "");

    const char *j = "{\"identity_url\":\"http://x/\\u0041\","
                    "\"Permission_Count\":12,\"ttl\":3600}";
    ck_assert_int_eq(nsq_auth_reply_parse(j, strlen(j), &a, NULL, 0), NSQ_OK);
    ck_assert_str_eq(a.identity, "");
    ck_assert_str_eq(a.identity_url, "http://x/A");
    ck_assert_int_eq(a.permission_count, 12);

    /* The longest strings that fit, and one byte more. */
    char buf[1200];
    for (int extra = 0; extra <= 1; extra++) {
        int n = snprintf(buf, sizeof buf, "{\"identity\":\"%0*d\"}",
                         255 + extra, 0);
        memset(&a, 0x5a, sizeof a);
        nsq_auth_reply_t before;
        memcpy(&before, &a, sizeof a);
        nsq_err_t rc =
            nsq_auth_reply_parse(buf, (size_t)n, &a, err, sizeof err);
        if (!extra) {
            ck_assert_int_eq(rc, NSQ_OK);
            ck_assert_uint_eq(strlen(a.identity), 255);
        } else {
            ck_assert_int_eq(rc, NSQ_ERR_BAD_JSON);
            ck_assert_str_eq(err, "field identity: string of 256 bytes too "
                                  "long");
            ck_assert_mem_eq(&a, &before, sizeof a);
        }
        n = snprintf(buf, sizeof buf, "{\"identity_url\":\"%0*d\"}",
                     511 + extra, 0);
        rc = nsq_auth_reply_parse(buf, (size_t)n, &a, err, sizeof err);
        if (!extra) {
            ck_assert_int_eq(rc, NSQ_OK);
            ck_assert_uint_eq(strlen(a.identity_url), 511);
        } else {
            ck_assert_int_eq(rc, NSQ_ERR_BAD_JSON);
            ck_assert_str_eq(err, "field identity_url: string of 512 bytes "
                                  "too long");
        }
    }

    static const char *const bad[] = {
        "{\"identity\":1}",
        "{\"identity_url\":false}",
        "{\"permission_count\":\"1\"}",
        "{\"permission_count\":1.5}",
        "[]",
        "OK",
        "{\"identity\":\"bench\"",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(nsq_auth_reply_parse(bad[i], strlen(bad[i]), &a, NULL,
                                           0) == NSQ_ERR_BAD_JSON,
                      "%s", bad[i]);
    ck_assert_int_eq(nsq_auth_reply_parse(AUTH_REPLY, 5, NULL, NULL, 0),
                     NSQ_ERR_INVALID_ARG);
}
END_TEST

/* ---------------------------------------------------------- server side */

START_TEST(broker_defaults)
{
    nsq_broker_info_t info;
    memset(&info, 0xa5, sizeof info);
    nsq_broker_info_default(&info);
    ck_assert_int_eq(info.limits.max_msg_size, 1048576);
    ck_assert_int_eq(info.limits.max_body_size, 5242880);
    ck_assert_int_eq(info.limits.max_req_timeout_ms, 3600000);
    ck_assert_int_eq(info.limits.max_rdy_count, 2500);
    ck_assert_int_eq(info.limits.max_msg_timeout_ms, 900000);
    ck_assert_int_eq(info.limits.max_heartbeat_ms, 60000);
    ck_assert_int_eq(info.limits.min_output_timeout_ms, 25);
    ck_assert_int_eq(info.limits.max_output_timeout_ms, 30000);
    ck_assert_int_eq(info.limits.max_output_size, 65536);
    ck_assert_int_eq(info.limits.max_deflate_level, 6);
    ck_assert_str_eq(info.version, "1.3.0");
    ck_assert_int_eq(info.msg_timeout_ms, 60000);
    ck_assert_int_eq(info.heartbeat_ms, 30000);
    ck_assert_int_eq(info.output_buffer_size, 16384);
    ck_assert_int_eq(info.output_timeout_ms, 250);
    ck_assert(!info.tls_enabled);
    ck_assert(info.snappy_enabled);
    ck_assert(info.deflate_enabled);
    ck_assert(!info.auth_enabled);

    info.heartbeat_ms = 11000;
    info.output_buffer_size = 1234;
    info.output_timeout_ms = 55;
    info.msg_timeout_ms = 7000;
    nsq_identify_settings_t s;
    memset(&s, 0xa5, sizeof s);
    nsq_identify_settings_init(&s, &info);
    ck_assert_ptr_null(s.client_id);
    ck_assert_ptr_null(s.hostname);
    ck_assert_ptr_null(s.user_agent);
    ck_assert(!s.feature_negotiation);
    ck_assert_int_eq(s.heartbeat_interval_ms, 11000);
    ck_assert_int_eq(s.output_buffer_size, 1234);
    ck_assert_int_eq(s.output_buffer_timeout_ms, 55);
    ck_assert_int_eq(s.msg_timeout_ms, 7000);
    ck_assert_int_eq(s.sample_rate, 0);
    ck_assert(!s.tls_v1 && !s.deflate && !s.snappy);
    ck_assert_int_eq(s.deflate_level, 0);
    nsq_identify_settings_free(&s);
    nsq_identify_settings_free(&s); /* harmless twice */
    ck_assert_ptr_null(s.client_id);
}
END_TEST

/* Every distinct IDENTIFY of the capture gets exactly nsqd's answer. */
START_TEST(apply_vectors)
{
    const vec_identify_t *v = &vec_identify[_i];
    unsigned char send[1024];
    size_t n = hex_decode(v->send_hex, send, sizeof send);
    env_t e;
    env_init(&e);
    e.info.tls_enabled = v->tls_enabled;
    e.info.auth_enabled = v->auth_enabled;
    nsq_err_t want = NSQ_OK;
    if (v->reply_type == NSQ_FRAME_ERROR)
        want = strncmp(v->reply, "E_BAD_BODY ", 11) == 0
                   ? NSQ_E_BAD_BODY
                   : NSQ_E_IDENTIFY_FAILED;
    nsq_err_t rc = env_apply_n(&e, (const char *)send + 13, n - 13);
    ck_assert_msg(rc == want, "%s: %d", v->name, rc);
    ck_reply(&e, v->reply);
    if (rc == NSQ_OK) {
        const char *cid = v->encodable ? v->id.client_id : "";
        ck_assert_str_eq(e.s.client_id, cid);
        ck_assert_int_eq(e.s.feature_negotiation, v->id.feature_negotiation);
        ck_assert_int_eq(e.s.snappy, v->id.feature_negotiation && v->id.snappy);
        ck_assert_int_eq(e.s.deflate,
                         v->id.feature_negotiation && v->id.deflate);
        ck_assert_int_eq(e.s.tls_v1, v->id.feature_negotiation &&
                                         v->id.tls_v1 && v->tls_enabled);
        ck_assert_int_eq(e.s.deflate_level, e.s.deflate ? 6 : 0);
    }
    /* Sent twice on one connection, it is answered the same. */
    if (rc == NSQ_OK) {
        ck_assert_int_eq(env_apply_n(&e, (const char *)send + 13, n - 13), rc);
        ck_reply(&e, v->reply);
    }
    env_free(&e);
}
END_TEST

START_TEST(apply_vector_settings)
{
    env_t e;
    env_init(&e);
    ck_assert_int_eq(
        env_apply(&e, "{\"client_id\":\"conformance\",\"hostname\":"
                      "\"conformance.local\",\"user_agent\":\"nsqpub-"
                      "conformance/1.0\",\"feature_negotiation\":true,"
                      "\"heartbeat_interval\":-1,\"output_buffer_size\":-1,"
                      "\"output_buffer_timeout\":-1,\"msg_timeout\":0,"
                      "\"sample_rate\":0,\"tls_v1\":false,\"deflate\":false,"
                      "\"deflate_level\":0,\"snappy\":false}"),
        NSQ_OK);
    ck_assert_str_eq(e.s.client_id, "conformance");
    ck_assert_str_eq(e.s.hostname, "conformance.local");
    ck_assert_str_eq(e.s.user_agent, "nsqpub-conformance/1.0");
    ck_assert_int_eq(e.s.heartbeat_interval_ms, 0);
    ck_assert_int_eq(e.s.output_buffer_size, 1);
    ck_assert_int_eq(e.s.output_buffer_timeout_ms, 0);
    ck_assert_int_eq(e.s.msg_timeout_ms, 60000);
    /* The reply reads back with the client's parser. */
    nsq_identify_reply_t r;
    ck_assert_int_eq(
        nsq_identify_reply_parse(e.reply.data, e.reply.len, &r, NULL, 0),
        NSQ_OK);
    ck_assert_int_eq(r.output_buffer_size, 1);
    ck_assert_int_eq(r.output_buffer_timeout, 0);
    env_free(&e);
}
END_TEST

/* Each range at and past its edges: body, result, setting afterwards. */
enum { HB, OBT, OBS, SR, MT };
static const struct {
    const char *body;
    nsq_err_t rc;
    int field;
    int64_t value;    /* the setting afterwards (on success) */
    const char *text; /* the error text (on failure) */
} ranges[] = {
    {"{\"heartbeat_interval\":-2}", NSQ_E_BAD_BODY, HB, 0,
     "E_BAD_BODY IDENTIFY heartbeat interval (-2) is invalid"},
    {"{\"heartbeat_interval\":-1}", NSQ_OK, HB, 0, NULL},
    {"{\"heartbeat_interval\":0}", NSQ_OK, HB, 30000, NULL},
    {"{\"heartbeat_interval\":1}", NSQ_E_BAD_BODY, HB, 0,
     "E_BAD_BODY IDENTIFY heartbeat interval (1) is invalid"},
    {"{\"heartbeat_interval\":999}", NSQ_E_BAD_BODY, HB, 0,
     "E_BAD_BODY IDENTIFY heartbeat interval (999) is invalid"},
    {"{\"heartbeat_interval\":1000}", NSQ_OK, HB, 1000, NULL},
    {"{\"heartbeat_interval\":60000}", NSQ_OK, HB, 60000, NULL},
    {"{\"heartbeat_interval\":60001}", NSQ_E_BAD_BODY, HB, 0,
     "E_BAD_BODY IDENTIFY heartbeat interval (60001) is invalid"},
    {"{\"output_buffer_timeout\":-2}", NSQ_E_BAD_BODY, OBT, 0,
     "E_BAD_BODY IDENTIFY output buffer timeout (-2) is invalid"},
    {"{\"output_buffer_timeout\":-1}", NSQ_OK, OBT, 0, NULL},
    {"{\"output_buffer_timeout\":0}", NSQ_OK, OBT, 250, NULL},
    {"{\"output_buffer_timeout\":24}", NSQ_E_BAD_BODY, OBT, 0,
     "E_BAD_BODY IDENTIFY output buffer timeout (24) is invalid"},
    {"{\"output_buffer_timeout\":25}", NSQ_OK, OBT, 25, NULL},
    {"{\"output_buffer_timeout\":30000}", NSQ_OK, OBT, 30000, NULL},
    {"{\"output_buffer_timeout\":30001}", NSQ_E_BAD_BODY, OBT, 0,
     "E_BAD_BODY IDENTIFY output buffer timeout (30001) is invalid"},
    {"{\"output_buffer_size\":-2}", NSQ_E_BAD_BODY, OBS, 0,
     "E_BAD_BODY IDENTIFY output buffer size (-2) is invalid"},
    {"{\"output_buffer_size\":-1}", NSQ_OK, OBS, 1, NULL},
    {"{\"output_buffer_size\":0}", NSQ_OK, OBS, 16384, NULL},
    {"{\"output_buffer_size\":63}", NSQ_E_BAD_BODY, OBS, 0,
     "E_BAD_BODY IDENTIFY output buffer size (63) is invalid"},
    {"{\"output_buffer_size\":64}", NSQ_OK, OBS, 64, NULL},
    {"{\"output_buffer_size\":65536}", NSQ_OK, OBS, 65536, NULL},
    {"{\"output_buffer_size\":65537}", NSQ_E_BAD_BODY, OBS, 0,
     "E_BAD_BODY IDENTIFY output buffer size (65537) is invalid"},
    {"{\"sample_rate\":-1}", NSQ_E_BAD_BODY, SR, 0,
     "E_BAD_BODY IDENTIFY sample rate (-1) is invalid"},
    {"{\"sample_rate\":0}", NSQ_OK, SR, 0, NULL},
    {"{\"sample_rate\":99}", NSQ_OK, SR, 99, NULL},
    {"{\"sample_rate\":100}", NSQ_E_BAD_BODY, SR, 0,
     "E_BAD_BODY IDENTIFY sample rate (100) is invalid"},
    {"{\"sample_rate\":2147483647}", NSQ_E_BAD_BODY, SR, 0,
     "E_BAD_BODY IDENTIFY sample rate (2147483647) is invalid"},
    {"{\"sample_rate\":-2147483648}", NSQ_E_BAD_BODY, SR, 0,
     "E_BAD_BODY IDENTIFY sample rate (-2147483648) is invalid"},
    {"{\"msg_timeout\":-1}", NSQ_E_BAD_BODY, MT, 0,
     "E_BAD_BODY IDENTIFY msg timeout (-1) is invalid"},
    {"{\"msg_timeout\":0}", NSQ_OK, MT, 60000, NULL},
    {"{\"msg_timeout\":999}", NSQ_E_BAD_BODY, MT, 0,
     "E_BAD_BODY IDENTIFY msg timeout (999) is invalid"},
    {"{\"msg_timeout\":1000}", NSQ_OK, MT, 1000, NULL},
    {"{\"msg_timeout\":900000}", NSQ_OK, MT, 900000, NULL},
    {"{\"msg_timeout\":900001}", NSQ_E_BAD_BODY, MT, 0,
     "E_BAD_BODY IDENTIFY msg timeout (900001) is invalid"},
    /* Go's int is 64 bits: big values are printed exactly. */
    {"{\"msg_timeout\":9223372036854775807}", NSQ_E_BAD_BODY, MT, 0,
     "E_BAD_BODY IDENTIFY msg timeout (9223372036854775807) is invalid"},
    {"{\"heartbeat_interval\":-9223372036854775808}", NSQ_E_BAD_BODY, HB, 0,
     "E_BAD_BODY IDENTIFY heartbeat interval (-9223372036854775808) is "
     "invalid"},
    {"{\"output_buffer_size\":9007199254740993}", NSQ_E_BAD_BODY, OBS, 0,
     "E_BAD_BODY IDENTIFY output buffer size (9007199254740993) is invalid"},
};

static int64_t setting(const nsq_identify_settings_t *s, int field)
{
    switch (field) {
    case HB:
        return s->heartbeat_interval_ms;
    case OBT:
        return s->output_buffer_timeout_ms;
    case OBS:
        return s->output_buffer_size;
    case SR:
        return s->sample_rate;
    default:
        return s->msg_timeout_ms;
    }
}

START_TEST(apply_ranges)
{
    env_t e;
    env_init(&e);
    nsq_err_t rc = env_apply(&e, ranges[_i].body);
    ck_assert_msg(rc == ranges[_i].rc, "%s: %d", ranges[_i].body, rc);
    if (rc == NSQ_OK) {
        ck_reply(&e, "OK");
        ck_assert_int_eq(setting(&e.s, ranges[_i].field), ranges[_i].value);
    } else {
        ck_reply(&e, ranges[_i].text);
    }
    /* With negotiation the JSON answer shows the client's settings. */
    char body[128];
    snprintf(body, sizeof body, "{\"feature_negotiation\":true,%s",
             ranges[_i].body + 1);
    env_free(&e);
    env_init(&e);
    ck_assert_int_eq(env_apply(&e, body), ranges[_i].rc);
    if (rc == NSQ_OK) {
        nsq_identify_reply_t r;
        ck_assert_int_eq(
            nsq_identify_reply_parse(e.reply.data, e.reply.len, &r, NULL, 0),
            NSQ_OK);
        ck_assert_int_eq(r.msg_timeout, e.s.msg_timeout_ms);
        ck_assert_int_eq(r.sample_rate, e.s.sample_rate);
        ck_assert_int_eq(r.output_buffer_size, e.s.output_buffer_size);
        ck_assert_int_eq(r.output_buffer_timeout, e.s.output_buffer_timeout_ms);
        if (ranges[_i].field != HB)
            ck_assert_int_eq(setting(&e.s, ranges[_i].field), ranges[_i].value);
    }
    env_free(&e);
}
END_TEST

/* The limits come from the broker's configuration, not constants. */
START_TEST(apply_custom_limits)
{
    env_t e;
    env_init(&e);
    e.info.limits.max_heartbeat_ms = 2000;
    e.info.limits.min_output_timeout_ms = 10;
    e.info.limits.max_output_timeout_ms = 20;
    e.info.limits.max_output_size = 100;
    e.info.limits.max_msg_timeout_ms = 1500;
    ck_assert_int_eq(env_apply(&e, "{\"heartbeat_interval\":2001}"),
                     NSQ_E_BAD_BODY);
    ck_assert_int_eq(env_apply(&e, "{\"output_buffer_timeout\":9}"),
                     NSQ_E_BAD_BODY);
    ck_assert_int_eq(env_apply(&e, "{\"output_buffer_timeout\":21}"),
                     NSQ_E_BAD_BODY);
    ck_assert_int_eq(env_apply(&e, "{\"output_buffer_size\":101}"),
                     NSQ_E_BAD_BODY);
    ck_assert_int_eq(env_apply(&e, "{\"msg_timeout\":1501}"), NSQ_E_BAD_BODY);
    ck_assert_int_eq(
        env_apply(&e, "{\"heartbeat_interval\":2000,\"output_buffer_timeout\":"
                      "10,\"output_buffer_size\":100,\"msg_timeout\":1500}"),
        NSQ_OK);
    ck_assert_int_eq(e.s.heartbeat_interval_ms, 2000);
    ck_assert_int_eq(e.s.output_buffer_timeout_ms, 10);
    ck_assert_int_eq(e.s.output_buffer_size, 100);
    ck_assert_int_eq(e.s.msg_timeout_ms, 1500);

    e.info.limits.max_rdy_count = 17;
    e.info.limits.max_msg_timeout_ms = 123456;
    e.info.limits.max_deflate_level = 9;
    e.info.version = "9.9<&>";
    ck_assert_int_eq(env_apply(&e, "{\"feature_negotiation\":true,"
                                   "\"deflate\":true,\"deflate_level\":8}"),
                     NSQ_OK);
    ck_reply(&e, "{\"max_rdy_count\":17,\"version\":"
                 "\"9.9\\u003c\\u0026\\u003e\",\"max_msg_timeout\":123456,"
                 "\"msg_timeout\":1500,\"tls_v1\":false,\"deflate\":true,"
                 "\"deflate_level\":8,\"max_deflate_level\":9,"
                 "\"snappy\":false,\"sample_rate\":0,\"auth_required\":false,"
                 "\"output_buffer_size\":100,\"output_buffer_timeout\":10}");
    e.info.version = NULL;
    ck_assert_int_eq(env_apply(&e, "{\"feature_negotiation\":true}"), NSQ_OK);
    ck_assert_ptr_nonnull(strstr(e.reply.data, "\"version\":\"\","));
    env_free(&e);
}
END_TEST

START_TEST(apply_output_size_disables_timeout)
{
    env_t e;
    env_init(&e);
    ck_assert_int_eq(env_apply(&e, "{\"output_buffer_size\":-1,"
                                   "\"output_buffer_timeout\":500}"),
                     NSQ_OK);
    ck_assert_int_eq(e.s.output_buffer_size, 1);
    ck_assert_int_eq(e.s.output_buffer_timeout_ms, 0);
    env_free(&e);
}
END_TEST

/* A second IDENTIFY on the connection: 0 keeps, absent is 0. */
START_TEST(apply_carry_over)
{
    env_t e;
    env_init(&e);
    ck_assert_int_eq(
        env_apply(&e, "{\"client_id\":\"a\",\"hostname\":\"b\",\"user_agent\":"
                      "\"c\",\"heartbeat_interval\":5000,"
                      "\"output_buffer_size\":1024,\"output_buffer_timeout\":"
                      "100,\"msg_timeout\":2000,\"sample_rate\":10}"),
        NSQ_OK);
    ck_assert_str_eq(e.s.client_id, "a");
    ck_assert_int_eq(e.s.heartbeat_interval_ms, 5000);
    ck_assert_int_eq(e.s.output_buffer_size, 1024);
    ck_assert_int_eq(e.s.output_buffer_timeout_ms, 100);
    ck_assert_int_eq(e.s.msg_timeout_ms, 2000);
    ck_assert_int_eq(e.s.sample_rate, 10);

    ck_assert_int_eq(env_apply(&e, "{\"feature_negotiation\":true}"), NSQ_OK);
    ck_assert_str_eq(e.s.client_id, "");
    ck_assert_str_eq(e.s.hostname, "");
    ck_assert_str_eq(e.s.user_agent, "");
    ck_assert_int_eq(e.s.heartbeat_interval_ms, 5000);
    ck_assert_int_eq(e.s.output_buffer_size, 1024);
    ck_assert_int_eq(e.s.output_buffer_timeout_ms, 100);
    ck_assert_int_eq(e.s.msg_timeout_ms, 2000);
    ck_assert_int_eq(e.s.sample_rate, 0); /* always set, 0 included */
    ck_reply(&e, "{\"max_rdy_count\":2500,\"version\":\"1.3.0\","
                 "\"max_msg_timeout\":900000,\"msg_timeout\":2000,"
                 "\"tls_v1\":false,\"deflate\":false,\"deflate_level\":6,"
                 "\"max_deflate_level\":6,\"snappy\":false,\"sample_rate\":0,"
                 "\"auth_required\":false,\"output_buffer_size\":1024,"
                 "\"output_buffer_timeout\":100}");

    ck_assert_int_eq(env_apply(&e, "{\"heartbeat_interval\":-1}"), NSQ_OK);
    ck_assert_int_eq(e.s.heartbeat_interval_ms, 0);
    ck_assert(!e.s.feature_negotiation);
    ck_assert_int_eq(env_apply(&e, "null"), NSQ_OK);
    ck_assert_int_eq(e.s.heartbeat_interval_ms, 0);
    ck_assert_int_eq(e.s.output_buffer_size, 1024);
    ck_reply(&e, "OK");
    env_free(&e);
}
END_TEST

/* A failing check keeps what nsqd had set before it; strings always. */
START_TEST(apply_partial)
{
    env_t e;
    env_init(&e);
    ck_assert_int_eq(env_apply(&e,
                               "{\"client_id\":\"x\",\"heartbeat_interval\":"
                               "5000,\"output_buffer_timeout\":24}"),
                     NSQ_E_BAD_BODY);
    ck_assert_str_eq(e.s.client_id, "x");
    ck_assert_int_eq(e.s.heartbeat_interval_ms, 5000);
    ck_assert_int_eq(e.s.output_buffer_timeout_ms, 250);

    /* The timeout is set before the size is refused. */
    ck_assert_int_eq(env_apply(&e, "{\"output_buffer_timeout\":100,"
                                   "\"output_buffer_size\":63}"),
                     NSQ_E_BAD_BODY);
    ck_assert_str_eq(e.s.client_id, "");
    ck_assert_int_eq(e.s.heartbeat_interval_ms, 5000);
    ck_assert_int_eq(e.s.output_buffer_timeout_ms, 100);
    ck_assert_int_eq(e.s.output_buffer_size, 16384);

    /* Sample rate is set before msg timeout is refused. */
    ck_assert_int_eq(env_apply(&e, "{\"sample_rate\":5,\"msg_timeout\":1}"),
                     NSQ_E_BAD_BODY);
    ck_assert_int_eq(e.s.sample_rate, 5);
    ck_assert_int_eq(e.s.msg_timeout_ms, 60000);
    ck_reply(&e, "E_BAD_BODY IDENTIFY msg timeout (1) is invalid");

    /* Checks run in nsqd's order: the first failing one is reported. */
    ck_assert_int_eq(env_apply(&e, "{\"msg_timeout\":1,\"sample_rate\":100,"
                                   "\"output_buffer_size\":1,"
                                   "\"output_buffer_timeout\":1,"
                                   "\"heartbeat_interval\":1}"),
                     NSQ_E_BAD_BODY);
    ck_reply(&e, "E_BAD_BODY IDENTIFY heartbeat interval (1) is invalid");
    ck_assert_int_eq(env_apply(&e, "{\"msg_timeout\":1,\"sample_rate\":100,"
                                   "\"output_buffer_size\":1,"
                                   "\"output_buffer_timeout\":1}"),
                     NSQ_E_BAD_BODY);
    ck_reply(&e, "E_BAD_BODY IDENTIFY output buffer timeout (1) is invalid");
    ck_assert_int_eq(env_apply(&e, "{\"msg_timeout\":1,\"sample_rate\":100,"
                                   "\"output_buffer_size\":1}"),
                     NSQ_E_BAD_BODY);
    ck_reply(&e, "E_BAD_BODY IDENTIFY output buffer size (1) is invalid");
    ck_assert_int_eq(env_apply(&e, "{\"msg_timeout\":1,\"sample_rate\":100}"),
                     NSQ_E_BAD_BODY);
    ck_reply(&e, "E_BAD_BODY IDENTIFY sample rate (100) is invalid");
    /* Range errors come before the compression choice. */
    ck_assert_int_eq(env_apply(&e, "{\"feature_negotiation\":true,\"snappy\":"
                                   "true,\"deflate\":true,\"msg_timeout\":1}"),
                     NSQ_E_BAD_BODY);
    env_free(&e);
}
END_TEST

/* A body that does not decode changes nothing. */
START_TEST(apply_decode_error_keeps_settings)
{
    env_t e;
    env_init(&e);
    ck_assert_int_eq(env_apply(&e, "{\"client_id\":\"keep\","
                                   "\"heartbeat_interval\":4000}"),
                     NSQ_OK);
    nsq_identify_settings_t before;
    memcpy(&before, &e.s, sizeof before);
    ck_assert_int_eq(env_apply(&e, "{\"client_id\":\"new\","
                                   "\"heartbeat_interval\":\"5000\"}"),
                     NSQ_E_BAD_BODY);
    ck_reply(&e, "E_BAD_BODY IDENTIFY failed to decode JSON body");
    ck_assert_mem_eq(&e.s, &before, sizeof before);
    ck_assert_str_eq(e.s.client_id, "keep");

    /* Every cut of a good body fails to decode. */
    const char *body = "{\"client_id\":\"c\",\"feature_negotiation\":true,"
                       "\"heartbeat_interval\":-1,\"x\":[null,{}]}";
    for (size_t i = 0; i < strlen(body); i++) {
        ck_assert_int_eq(env_apply_n(&e, body, i), NSQ_E_BAD_BODY);
        ck_reply(&e, "E_BAD_BODY IDENTIFY failed to decode JSON body");
        ck_assert_mem_eq(&e.s, &before, sizeof before);
    }
    ck_assert_int_eq(env_apply(&e, body), NSQ_OK);
    env_free(&e);
}
END_TEST

/* Bodies Go's encoding/json refuses for nsqd's struct. */
static const struct {
    const char *body;
    size_t len; /* 0: strlen */
} bad_bodies[] = {
    {"", 0},
    {" \n", 0},
    {"{", 0},
    {"{not json", 0},
    {"[]", 0},
    {"[{}]", 0},
    {"1", 0},
    {"\"{}\"", 0},
    {"true", 0},
    {"{}x", 0},
    {"{} {}", 0},
    {"null null", 0},
    {"nul", 0},
    {"\xef\xbb\xbf{}", 0},
    {"{}\x0c", 0},
    {"\x0b{}", 0},
    {"{}\0", 3},
    {"{\"client_id\":\"a\0b\"}", 19},
    {"{\"client_id\":\"a\x01\"}", 0},
    {"{\"client_id\":\"a\x1f\"}", 0},
    {"{\"client_id\":\"\\x\"}", 0},
    {"{\"client_id\":\"\\u12\"}", 0},
    {"{\"client_id\":\"abc}", 0},
    {"{\"a\":01}", 0},
    {"{\"a\":-01}", 0},
    {"{\"a\":1.}", 0},
    {"{\"a\":-}", 0},
    {"{\"a\":+1}", 0},
    {"{\"a\":.5}", 0},
    {"{\"a\":1e}", 0},
    {"{\"a\":1e+}", 0},
    {"{\"a\":0x10}", 0},
    {"{\"a\":NaN}", 0},
    {"{\"a\":Infinity}", 0},
    {"{\"a\":True}", 0},
    {"{\"a\":[1,]}", 0},
    {"{\"a\":[,1]}", 0},
    {"{\"a\":{\"b\"}}", 0},
    {"{\"a\":1,}", 0},
    {"{,}", 0},
    {"{\"a\" 1}", 0},
    {"{\"a\"::1}", 0},
    {"{a:1}", 0},
    {"{'a':1}", 0},
    {"{\"heartbeat_interval\":\"1000\"}", 0},
    {"{\"heartbeat_interval\":1000.0}", 0},
    {"{\"heartbeat_interval\":1e3}", 0},
    {"{\"heartbeat_interval\":1E3}", 0},
    {"{\"heartbeat_interval\":-0.0}", 0},
    {"{\"heartbeat_interval\":true}", 0},
    {"{\"heartbeat_interval\":[1000]}", 0},
    {"{\"heartbeat_interval\":{}}", 0},
    {"{\"heartbeat_interval\":9223372036854775808}", 0},
    {"{\"msg_timeout\":-9223372036854775809}", 0},
    {"{\"sample_rate\":2147483648}", 0},
    {"{\"sample_rate\":-2147483649}", 0},
    {"{\"feature_negotiation\":1}", 0},
    {"{\"feature_negotiation\":\"true\"}", 0},
    {"{\"snappy\":0}", 0},
    {"{\"tls_v1\":[]}", 0},
    {"{\"client_id\":1}", 0},
    {"{\"hostname\":false}", 0},
    {"{\"user_agent\":{}}", 0},
    {"{\"user_agent\":[\"x\"]}", 0},
    /* A type error anywhere fails the whole body, even after good fields. */
    {"{\"client_id\":\"ok\",\"heartbeat_interval\":1000,\"deflate\":\"no\"}",
     0},
    /* Duplicates are each decoded: a bad first one still fails. */
    {"{\"snappy\":1,\"snappy\":true}", 0},
    /* Case-insensitive keys have the field's type. */
    {"{\"HEARTBEAT_INTERVAL\":\"1\"}", 0},
};

START_TEST(apply_bad_json)
{
    const char *body = bad_bodies[_i].body;
    size_t len = bad_bodies[_i].len ? bad_bodies[_i].len : strlen(body);
    env_t e;
    env_init(&e);
    nsq_identify_settings_t before;
    memcpy(&before, &e.s, sizeof before);
    ck_assert_msg(env_apply_n(&e, body, len) == NSQ_E_BAD_BODY, "%s", body);
    ck_reply(&e, "E_BAD_BODY IDENTIFY failed to decode JSON body");
    ck_assert_mem_eq(&e.s, &before, sizeof before);
    env_free(&e);
}
END_TEST

START_TEST(apply_good_json)
{
    env_t e;
    env_init(&e);
    /* Top-level null sets nothing but counts as an IDENTIFY. */
    ck_assert_int_eq(env_apply(&e, " null\r\n"), NSQ_OK);
    ck_reply(&e, "OK");
    ck_assert_str_eq(e.s.client_id, "");
    ck_assert_int_eq(env_apply(&e, "\t{ }\n"), NSQ_OK);
    /* null for a field leaves it unset; unknown keys of any shape pass. */
    ck_assert_int_eq(env_apply(&e, "{\"heartbeat_interval\":2000}"), NSQ_OK);
    ck_assert_int_eq(
        env_apply(&e, "{\"heartbeat_interval\":null,\"client_id\":null,"
                      "\"feature_negotiation\":null,\"unknown\":{\"a\":[1,"
                      "-2.5e+3,\"s\",true,false,null,{}],\"b\":{}},"
                      "\"\":0,\"msg_timeout\":-0}"),
        NSQ_OK);
    ck_reply(&e, "OK");
    ck_assert_int_eq(e.s.heartbeat_interval_ms, 2000);
    ck_assert_int_eq(e.s.msg_timeout_ms, 60000);
    ck_assert_str_eq(e.s.client_id, "");
    /* Numbers may have exponents and fractions where nothing reads them. */
    ck_assert_int_eq(env_apply(&e, "{\"x\":0.5e-10,\"y\":-0,\"z\":1E+2}"),
                     NSQ_OK);
    env_free(&e);
}
END_TEST

/* Go matches keys case-insensitively, escapes decoded, last one wins. */
START_TEST(apply_keys)
{
    env_t e;
    env_init(&e);
    ck_assert_int_eq(
        env_apply(&e, "{\"HEARTBEAT_INTERVAL\":2000,\"Client_Id\":\"a\","
                      "\"client\\u005fid\":\"b\",\"hostname \":\"no\","
                      "\"Feature_Negotiation\":true,"
                      "\"\\u017fnappy\":true}"),
        NSQ_OK);
    ck_assert_int_eq(e.s.heartbeat_interval_ms, 2000);
    ck_assert_str_eq(e.s.client_id, "b");
    ck_assert_str_eq(e.s.hostname, "");
    ck_assert(e.s.feature_negotiation);
    ck_assert(e.s.snappy); /* U+017F folds to s, as in Go */
    /* Raw UTF-8 long s too; other look-alikes do not match. */
    ck_assert_int_eq(env_apply(&e, "{\"feature_negotiation\":true,"
                                   "\"\xc5\xbfnappy\":true}"),
                     NSQ_OK);
    ck_assert(e.s.snappy);
    ck_assert_int_eq(env_apply(&e, "{\"feature_negotiation\":true,"
                                   "\"\xef\xbd\x93nappy\":true,"
                                   "\"snappy_\":true,\"snapp\":true}"),
                     NSQ_OK);
    ck_assert(!e.s.snappy);
    /* Duplicates: the later wins, a later null keeps the earlier value. */
    ck_assert_int_eq(env_apply(&e, "{\"heartbeat_interval\":3000,"
                                   "\"heartbeat_interval\":4000,"
                                   "\"Heartbeat_Interval\":null,"
                                   "\"client_id\":\"1\",\"client_id\":\"2\"}"),
                     NSQ_OK);
    ck_assert_int_eq(e.s.heartbeat_interval_ms, 4000);
    ck_assert_str_eq(e.s.client_id, "2");
    env_free(&e);
}
END_TEST

/* Strings decode like Go's: escapes, surrogates, invalid UTF-8 as U+FFFD. */
static const struct {
    const char *json; /* the client_id value, quotes included */
    const char *want;
} strings[] = {
    {"\"plain\"", "plain"},
    {"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t"},
    {"\"\\u0041\\u00e9\\u20AC\"", "A\xc3\xa9\xe2\x82\xac"},
    {"\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80"},
    {"\"\\uD83D\\uDE00x\"", "\xf0\x9f\x98\x80x"},
    {"\"\\ud800\"", "\xef\xbf\xbd"},
    {"\"\\udc00\\ud800\"", "\xef\xbf\xbd\xef\xbf\xbd"},
    {"\"\\udc00\\udc00\"", "\xef\xbf\xbd\xef\xbf\xbd"},
    {"\"\\ud800\\u0041\"", "\xef\xbf\xbd"
                           "A"},
    {"\"\\ud800\\ud800\\udc00\"", "\xef\xbf\xbd\xf0\x90\x80\x80"},
    {"\"\\ud800x\"", "\xef\xbf\xbdx"},
    {"\"\\ud800\\n\"", "\xef\xbf\xbd\n"},
    {"\"\xff\"", "\xef\xbf\xbd"},
    {"\"\xc3\xa9\xf0\x9f\x98\x80\"", "\xc3\xa9\xf0\x9f\x98\x80"},
    {"\"\xed\xa0\x80\"", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
    {"\"\xe2\x82x\"", "\xef\xbf\xbd\xef\xbf\xbdx"},
    {"\"\x7f\"", "\x7f"},
    /* A C string ends at a \u0000. */
    {"\"a\\u0000b\"", "a"},
};

START_TEST(apply_strings)
{
    char body[128];
    snprintf(body, sizeof body, "{\"client_id\":%s,\"user_agent\":%s}",
             strings[_i].json, strings[_i].json);
    env_t e;
    env_init(&e);
    ck_assert_msg(env_apply(&e, body) == NSQ_OK, "%s", body);
    ck_assert_str_eq(e.s.client_id, strings[_i].want);
    ck_assert_str_eq(e.s.user_agent, strings[_i].want);
    env_free(&e);
}
END_TEST

/* Nesting: Go allows 10000 levels, counting the top-level object. */
START_TEST(apply_depth)
{
    for (int depth = 9999; depth <= 10000; depth++) {
        char *body = malloc((size_t)depth * 5 + 16);
        ck_assert_ptr_nonnull(body);
        /* {"a":[[...]]}: the top-level object is one level, too. */
        size_t k = (size_t)sprintf(body, "{\"a\":");
        memset(body + k, '[', (size_t)depth);
        k += (size_t)depth;
        memset(body + k, ']', (size_t)depth);
        k += (size_t)depth;
        body[k++] = '}';
        env_t e;
        env_init(&e);
        ck_assert_int_eq(env_apply_n(&e, body, k),
                         depth < 10000 ? NSQ_OK : NSQ_E_BAD_BODY);
        /* Objects count the same: {"a":{"":{"":{}}}}. */
        k = (size_t)sprintf(body, "{\"a\":");
        for (int i = 0; i + 1 < depth; i++) {
            memcpy(body + k, "{\"\":", 4);
            k += 4;
        }
        body[k++] = '{';
        memset(body + k, '}', (size_t)depth + 1);
        k += (size_t)depth + 1;
        ck_assert_int_eq(env_apply_n(&e, body, k),
                         depth < 10000 ? NSQ_OK : NSQ_E_BAD_BODY);
        env_free(&e);
        free(body);
    }
    /* A top-level array may nest one level deeper, but is no object. */
    char *deep = malloc(20001);
    ck_assert_ptr_nonnull(deep);
    memset(deep, '[', 10000);
    memset(deep + 10000, ']', 10000);
    env_t e;
    env_init(&e);
    ck_assert_int_eq(env_apply_n(&e, deep, 20000), NSQ_E_BAD_BODY);
    /* A reply (read by cJSON) that deep is refused, not a crash. */
    nsq_identify_reply_t r;
    char err[64];
    ck_assert_int_eq(nsq_identify_reply_parse(deep, 20000, &r, err, sizeof err),
                     NSQ_ERR_BAD_JSON);
    ck_assert_ptr_nonnull(strstr(err, "malformed JSON"));
    env_free(&e);
    free(deep);
}
END_TEST

/* The compression choice and what is granted. */
static const struct {
    bool deflate_enabled, snappy_enabled, tls_enabled;
    int max_deflate_level;
    const char *body;
    nsq_err_t rc;
    bool tls, deflate, snappy;
    int64_t level;       /* in the reply */
    int64_t granted_lvl; /* s->deflate_level */
} compression[] = {
    {true, true, false, 6, "\"deflate\":true,\"deflate_level\":0", NSQ_OK,
     false, true, false, 6, 6},
    {true, true, false, 6, "\"deflate\":true,\"deflate_level\":-3", NSQ_OK,
     false, true, false, 6, 6},
    {true, true, false, 6, "\"deflate\":true,\"deflate_level\":1", NSQ_OK,
     false, true, false, 1, 1},
    {true, true, false, 6, "\"deflate\":true,\"deflate_level\":7", NSQ_OK,
     false, true, false, 6, 6},
    {true, true, false, 9, "\"deflate\":true,\"deflate_level\":9", NSQ_OK,
     false, true, false, 9, 9},
    {true, true, false, 6, "\"deflate\":false,\"deflate_level\":3", NSQ_OK,
     false, false, false, 6, 0},
    {true, true, false, 3, "\"deflate\":false", NSQ_OK, false, false, false, 3,
     0},
    {false, true, false, 6, "\"deflate\":true,\"deflate_level\":3", NSQ_OK,
     false, false, false, 6, 0},
    {true, true, false, 6, "\"snappy\":true", NSQ_OK, false, false, true, 6, 0},
    {true, false, false, 6, "\"snappy\":true", NSQ_OK, false, false, false, 6,
     0},
    {true, true, false, 6, "\"snappy\":true,\"deflate\":true",
     NSQ_E_IDENTIFY_FAILED, false, false, false, 0, 0},
    {true, false, false, 6, "\"snappy\":true,\"deflate\":true", NSQ_OK, false,
     true, false, 6, 6},
    {false, true, false, 6, "\"snappy\":true,\"deflate\":true", NSQ_OK, false,
     false, true, 6, 0},
    {true, true, false, 6, "\"tls_v1\":true", NSQ_OK, false, false, false, 6,
     0},
    {true, true, true, 6, "\"tls_v1\":true,\"snappy\":true", NSQ_OK, true,
     false, true, 6, 0},
    {true, true, true, 6, "\"tls_v1\":false", NSQ_OK, false, false, false, 6,
     0},
};

START_TEST(apply_compression)
{
    char body[256];
    snprintf(body, sizeof body, "{\"feature_negotiation\":true,%s}",
             compression[_i].body);
    env_t e;
    env_init(&e);
    e.info.deflate_enabled = compression[_i].deflate_enabled;
    e.info.snappy_enabled = compression[_i].snappy_enabled;
    e.info.tls_enabled = compression[_i].tls_enabled;
    e.info.limits.max_deflate_level = compression[_i].max_deflate_level;
    /* What an earlier IDENTIFY granted is replaced, or kept on failure. */
    e.s.tls_v1 = e.s.deflate = e.s.snappy = true;
    e.s.deflate_level = 4;
    ck_assert_int_eq(env_apply(&e, body), compression[_i].rc);
    if (compression[_i].rc != NSQ_OK) {
        ck_reply(&e, "E_IDENTIFY_FAILED cannot enable both deflate and snappy "
                     "compression");
        ck_assert(e.s.tls_v1 && e.s.deflate && e.s.snappy);
        ck_assert_int_eq(e.s.deflate_level, 4);
        env_free(&e);
        return;
    }
    ck_assert_int_eq(e.s.tls_v1, compression[_i].tls);
    ck_assert_int_eq(e.s.deflate, compression[_i].deflate);
    ck_assert_int_eq(e.s.snappy, compression[_i].snappy);
    ck_assert_int_eq(e.s.deflate_level, compression[_i].granted_lvl);
    char want[512];
    snprintf(want, sizeof want,
             "{\"max_rdy_count\":2500,\"version\":\"1.3.0\","
             "\"max_msg_timeout\":900000,\"msg_timeout\":60000,"
             "\"tls_v1\":%s,\"deflate\":%s,\"deflate_level\":%d,"
             "\"max_deflate_level\":%d,\"snappy\":%s,\"sample_rate\":0,"
             "\"auth_required\":false,\"output_buffer_size\":16384,"
             "\"output_buffer_timeout\":250}",
             compression[_i].tls ? "true" : "false",
             compression[_i].deflate ? "true" : "false",
             (int)compression[_i].level, compression[_i].max_deflate_level,
             compression[_i].snappy ? "true" : "false");
    ck_reply(&e, want);

    /* Without negotiation nothing is granted and the answer is OK. */
    snprintf(body, sizeof body, "{\"feature_negotiation\":false,%s}",
             compression[_i].body);
    ck_assert_int_eq(env_apply(&e, body), NSQ_OK);
    ck_reply(&e, "OK");
    ck_assert(!e.s.tls_v1 && !e.s.deflate && !e.s.snappy);
    ck_assert_int_eq(e.s.deflate_level, 0);
    env_free(&e);
}
END_TEST

START_TEST(apply_auth_required)
{
    env_t e;
    env_init(&e);
    e.info.auth_enabled = true;
    ck_assert_int_eq(env_apply(&e, "{\"feature_negotiation\":true}"), NSQ_OK);
    ck_assert_ptr_nonnull(strstr(e.reply.data, ",\"auth_required\":true,"));
    env_free(&e);
}
END_TEST

START_TEST(apply_appends_and_args)
{
    env_t e;
    env_init(&e);
    ck_assert_int_eq(nsq_buf_append(&e.reply, "prev", 4), NSQ_OK);
    ck_assert_int_eq(nsq_identify_apply("{}", 2, &e.info, &e.s, &e.reply),
                     NSQ_OK);
    ck_assert_uint_eq(e.reply.len, 6);
    ck_assert_mem_eq(e.reply.data, "prevOK", 6);
    ck_assert_int_eq(nsq_identify_apply("{", 1, &e.info, &e.s, &e.reply),
                     NSQ_E_BAD_BODY);
    ck_assert_mem_eq(e.reply.data, "prevOKE_BAD_BODY ", 17);

    size_t len = e.reply.len;
    ck_assert_int_eq(nsq_identify_apply(NULL, 1, &e.info, &e.s, &e.reply),
                     NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(nsq_identify_apply("{}", 2, NULL, &e.s, &e.reply),
                     NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(nsq_identify_apply("{}", 2, &e.info, NULL, &e.reply),
                     NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(nsq_identify_apply("{}", 2, &e.info, &e.s, NULL),
                     NSQ_ERR_INVALID_ARG);
    ck_assert_uint_eq(e.reply.len, len);
    /* No body at all does not decode. */
    ck_assert_int_eq(nsq_identify_apply(NULL, 0, &e.info, &e.s, &e.reply),
                     NSQ_E_BAD_BODY);
    env_free(&e);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("identify");
    TCase *tc = tcase_create("client");
    tcase_add_test(tc, identify_default);
    tcase_add_loop_test(tc, cmd_identify_vectors, 0, (int)encodable_count());
    tcase_add_test(tc, cmd_identify_vectors_count);
    tcase_add_test(tc, cmd_identify_defaults_null_strings);
    tcase_add_test(tc, cmd_identify_numbers);
    tcase_add_loop_test(tc, cmd_identify_escaping, 0,
                        (int)(sizeof escapes / sizeof escapes[0]));
    tcase_add_test(tc, cmd_identify_invalid);
    tcase_add_loop_test(tc, cmd_identify_roundtrip, 0,
                        (int)(sizeof escapes / sizeof escapes[0]));
    tcase_add_test(tc, reply_parse_ok);
    tcase_add_test(tc, reply_parse_vectors);
    tcase_add_test(tc, reply_parse_lenient);
    tcase_add_loop_test(tc, reply_parse_errors, 0,
                        (int)(sizeof reply_errors / sizeof reply_errors[0]));
    tcase_add_test(tc, reply_parse_prefixes_and_nul);
    tcase_add_test(tc, auth_reply);
    suite_add_tcase(s, tc);

    tc = tcase_create("server");
    tcase_add_test(tc, broker_defaults);
    tcase_add_loop_test(tc, apply_vectors, 0, (int)NVEC);
    tcase_add_test(tc, apply_vector_settings);
    tcase_add_loop_test(tc, apply_ranges, 0,
                        (int)(sizeof ranges / sizeof ranges[0]));
    tcase_add_test(tc, apply_custom_limits);
    tcase_add_test(tc, apply_output_size_disables_timeout);
    tcase_add_test(tc, apply_carry_over);
    tcase_add_test(tc, apply_partial);
    tcase_add_test(tc, apply_decode_error_keeps_settings);
    tcase_add_loop_test(tc, apply_bad_json, 0,
                        (int)(sizeof bad_bodies / sizeof bad_bodies[0]));
    tcase_add_test(tc, apply_good_json);
    tcase_add_test(tc, apply_keys);
    tcase_add_loop_test(tc, apply_strings, 0,
                        (int)(sizeof strings / sizeof strings[0]));
    tcase_add_test(tc, apply_depth);
    tcase_add_loop_test(tc, apply_compression, 0,
                        (int)(sizeof compression / sizeof compression[0]));
    tcase_add_test(tc, apply_auth_required);
    tcase_add_test(tc, apply_appends_and_args);
    suite_add_tcase(s, tc);

    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
